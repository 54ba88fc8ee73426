"""The run queue: entries in the runs root, order, claims, sweeps, the CLI, and real engines."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.core.errors import UserError
from engine.rundir.runs import list_runs, run_info
from engine.runs import queue
from tests.fakeruns import cli, make_fake_run


def cfg_with(lr: float = 1e-3, name: str = "") -> RunConfig:
    """A default config with a learning rate and run name."""
    cfg = RunConfig()
    cfg.training.learning_rate = lr
    cfg.output.run_name = name
    return cfg


def test_add_list_move_remove(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    a, b, c = (queue.add(root, cfg_with(name=n)) for n in ("a", "b", "c"))
    assert [e.name for e in queue.entries(root)] == ["a", "b", "c"]
    queue.move(root, c.entry_id, -1)
    assert [e.name for e in queue.entries(root)] == ["a", "c", "b"]
    queue.move(root, "1", 5)  # by place in the line; clamped at the end
    assert [e.name for e in queue.entries(root)] == ["c", "b", "a"]
    queue.remove(root, b.entry_id)
    assert [e.name for e in queue.entries(root)] == ["c", "a"]
    queue.update(root, a.entry_id, cfg_with(lr=5e-4, name="a2"))
    assert [(e.name, e.config.training.learning_rate) for e in queue.entries(root)] == [
        ("c", 1e-3),
        ("a2", 5e-4),
    ]
    with pytest.raises(UserError, match="no queued run"):
        queue.remove(root, "zzzz")
    # Entries are plain JSON files beside the runs, not run directories.
    assert all(json.loads(p.read_text())["config"] for p in (root / "queue").glob("*.json"))
    assert list_runs(root) == []


def test_a_bad_config_is_not_queued(tmp_path: Path) -> None:
    cfg = cfg_with(lr=5.0)
    with pytest.raises(UserError, match="learning_rate"):
        queue.add(tmp_path, cfg)
    assert queue.entries(tmp_path) == []


def test_only_one_of_two_claimers_gets_an_entry(tmp_path: Path) -> None:
    entry = queue.add(tmp_path, cfg_with())
    copies = queue.entries(tmp_path) * 8
    wins: list[bool] = []
    threads = [
        threading.Thread(target=lambda e=e: wins.append(queue.claim(tmp_path, e))) for e in copies
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1
    assert queue.entries(tmp_path) == [] and entry.entry_id


def test_start_next_waits_while_an_engine_is_alive(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "runs"
    busy = make_fake_run(root, "busy", "running")  # its "engine" is this test process
    queue.add(root, cfg_with(name="next"))
    launched: list[RunConfig] = []
    monkeypatch.setattr("engine.runs.launch.launch", lambda cfg, r: launched.append(cfg) or r / "x")
    assert queue.start_next(root) is None and not launched
    # The finishing engine itself does not count.
    assert queue.start_next(root, exclude=busy) == root / "x"
    assert [c.output.run_name for c in launched] == ["next"]
    assert queue.entries(root) == []


def test_sweep_grid_names_and_ids(tmp_path: Path) -> None:
    base = RunConfig()
    values = {
        "learning_rate": queue.parse_values("learning_rate", "3e-4, 1e-3,2e-3"),
        "lora_r": queue.parse_values("lora_r", "4,8"),
    }
    added = queue.add_sweep(tmp_path, base, values)
    assert len(added) == 6
    assert len({e.sweep_id for e in added}) == 1 and added[0].sweep_id.startswith("sweep-")
    assert [e.name for e in added][:3] == ["lr3e-04-r4", "lr3e-04-r8", "lr1e-03-r4"]
    assert {(e.config.training.learning_rate, e.config.lora.lora_r) for e in added} == {
        (lr, r) for lr in (3e-4, 1e-3, 2e-3) for r in (4, 8)
    }
    with pytest.raises(UserError, match="number"):
        queue.parse_values("learning_rate", "3e-4,fast")


def test_cli_queue_commands(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    make_fake_run(root, "busy", "running")  # keeps the queue from starting anything
    done = cli(root, "train", "--queue", "--sweep", "learning_rate=3e-4,1e-3", "--epochs", "1")
    assert done.returncode == 0, done.stderr
    assert "queued sweep" in done.stdout and "starts when the current run ends" in done.stdout
    listing = cli(root, "queue")
    assert "lr3e-04" in listing.stdout and "lr1e-03" in listing.stdout
    assert cli(root, "queue", "down", "1").returncode == 0
    names = [r["name"] for r in json.loads(cli(root, "queue", "list", "--json").stdout)]
    assert names == ["lr1e-03", "lr3e-04"]
    assert cli(root, "queue", "rm", "2").returncode == 0
    bad = cli(root, "queue", "rm", "9")
    assert bad.returncode == 2 and "error:" in bad.stderr and "Traceback" not in bad.stderr
    bad = cli(root, "queue", "add", "--sweep", "learning_rate")
    assert bad.returncode == 2 and "NAME=V1,V2" in bad.stderr
    started = cli(root, "queue", "start")
    assert "is training" in started.stdout


@pytest.mark.slow
def test_a_queued_run_starts_when_the_previous_one_ends_with_no_ui(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakeruns import engine_env

    root = tmp_path / "runs"
    for key, value in engine_env(root).items():
        monkeypatch.setenv(key, value)
    base = RunConfig()
    base.model.model_name = str(tiny_model)
    base.training.eval_strategy = "no"
    base.training.save_strategy = "no"
    base.training.checkpoint_minutes = 0
    base.training.max_steps = 6
    # Queue two runs while nothing trains: the first starts at once, the second waits for it.
    queue.add(root, base.copy())
    second = base.copy()
    second.output.run_name = "second"
    queue.add(root, second)
    first_dir = queue.start_next(root)
    assert first_dir is not None
    assert queue.start_next(root) is None, "two engines at once"
    assert [e.name for e in queue.entries(root)] == ["second"]

    def runs() -> list:
        return list_runs(root)

    for _ in range(3000):
        states = {r.run_id: r.state for r in runs()}
        if len(states) == 2 and all(s == "finished" for s in states.values()):
            break
        # Never two engines at once.
        assert sum(s in ("running", "starting") for s in states.values()) <= 1, states
        time.sleep(0.1)
    else:
        raise AssertionError(f"the queue did not run through: {states}")
    second_dir = next(r.path for r in runs() if r.path != first_dir)
    assert second_dir.name.endswith("second")
    assert run_info(second_dir).started_at >= run_info(first_dir).updated_at
    assert queue.entries(root) == []


def test_a_queue_problem_after_a_run_is_logged_not_raised(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "runs"
    run = make_fake_run(root, "done", "finished")
    queue.add(root, cfg_with(name="next"))

    def broken(*args, **kwargs):
        raise ImportError("half-updated install")

    monkeypatch.setattr("engine.runs.queue.start_next", broken)
    assert queue.after_run(run) is None
    assert "half-updated install" in (root / "queue" / "failures.log").read_text()
    assert [e.name for e in queue.entries(root)] == ["next"], "the entry waits for the next try"
