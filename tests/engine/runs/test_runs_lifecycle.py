"""The core promise: runs outlive the terminal, survive kill -9 (resume), stop cleanly, list right."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.rundir.events import (
    Checkpoint,
    Event,
    EventReader,
    EventWriter,
    Finished,
    Log,
    Started,
    Step,
    Stopped,
    read_events,
)
from engine.rundir.runs import engine_alive, list_runs, read_status, run_info
from tests.fakeruns import REPO, engine_env, make_fake_run


def wait_for(check: Callable[[], object], what: str, limit: float = 300.0) -> object:
    """Poll `check` until it returns something truthy (a safety limit, not a timing assertion)."""
    for _ in range(int(limit / 0.1)):
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture
def tiny(tiny_model: Path) -> Path:
    """The session's tiny BERT folder (from conftest)."""
    return tiny_model


@pytest.fixture
def engine_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Engines spawned from this test process run offline; returns the runs root."""
    root = tmp_path / "runs"
    for key, value in engine_env(root).items():
        monkeypatch.setenv(key, value)
    return root


def tiny_config(model: Path, **training: object) -> RunConfig:
    """A tiny, quick run of the bundled example data."""
    cfg = RunConfig()
    cfg.model.model_name = str(model)
    cfg.training.logging_steps = 1
    cfg.training.eval_strategy = "no"
    cfg.training.checkpoint_minutes = 0
    for key, value in training.items():
        setattr(cfg.training, key, value)
    return cfg


def state_of(run_dir: Path) -> str:
    """The run's state as the run list shows it."""
    return run_info(run_dir).state


def typed(run_dir: Path, cls: type[Event]) -> list:
    """The run's events of one type."""
    return [e for e in read_events(run_dir) if isinstance(e, cls)]


def kill_engine(run_dir: Path) -> None:
    """Kill the run's engine process with SIGKILL and wait until it is gone."""
    pid = int(read_status(run_dir)["pid"])
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not engine_alive(run_dir), "the killed engine to be gone", 60)


# A terminal's programs die on hang-up: SIGHUP at its default even when the tests themselves run
# under nohup (which would otherwise pass SIG_IGN down to this launcher).
LAUNCHER = """
import signal, sys, time
signal.signal(signal.SIGHUP, signal.SIG_DFL)
from pathlib import Path
from engine.config import RunConfig
from engine.runs.launch import launch
run_dir = launch(RunConfig.load(sys.argv[1]), Path(sys.argv[2]))
print(run_dir, flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_run_survives_sighup_of_the_launching_terminal(
    tiny: Path, engine_environment: Path, tmp_path: Path
) -> None:
    root = engine_environment
    cfg_file = tmp_path / "run.toml"
    tiny_config(tiny, max_steps=12).save(cfg_file)
    # The "terminal": a process in its own session (like a login shell) that launches the run.
    parent = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(cfg_file), str(root)],
        stdout=subprocess.PIPE, text=True, start_new_session=True, cwd=str(REPO),
    )  # fmt: skip
    assert parent.stdout is not None
    run_dir = Path(parent.stdout.readline().strip())
    pgid = os.getpgid(parent.pid)
    assert engine_alive(run_dir)

    # Two readers follow the live run while the terminal hangs up.
    readers = [EventReader(run_dir), EventReader(run_dir)]
    seen: list[list[Event]] = [[], []]
    done = threading.Event()

    def follow(i: int, poll: float) -> None:
        for batch in readers[i].follow(done, poll_s=poll):
            seen[i].extend(batch)

    threads = [threading.Thread(target=follow, args=(i, p)) for i, p in ((0, 0.05), (1, 0.3))]
    for t in threads:
        t.start()
    os.killpg(pgid, signal.SIGHUP)
    assert parent.wait(timeout=30) == -signal.SIGHUP
    assert engine_alive(run_dir), "the engine died with its launching terminal"

    wait_for(lambda: state_of(run_dir) == "finished", "the run to finish")
    time.sleep(0.5)  # let both readers take the last lines
    done.set()
    for t in threads:
        t.join(10)
    steps = typed(run_dir, Step)
    assert steps and steps[-1].step == 12
    assert typed(run_dir, Finished)[0].step == 12
    assert (run_dir / "adapter" / "adapter_config.json").is_file()
    lines = [e.to_json() for e in read_events(run_dir)]
    assert [e.to_json() for e in seen[0]] == lines
    assert [e.to_json() for e in seen[1]] == lines


@pytest.mark.slow
def test_kill_9_then_resume_continues_after_the_checkpoint(
    tiny: Path, engine_environment: Path
) -> None:
    from engine.runs.launch import launch, resume
    from engine.training.train import last_checkpoint

    total = 30
    cfg = tiny_config(tiny, max_steps=total, save_strategy="steps", save_steps=4, batch_size=8)
    run_dir = launch(cfg, engine_environment)
    wait_for(lambda: typed(run_dir, Checkpoint), "a first checkpoint")
    kill_engine(run_dir)
    assert state_of(run_dir) == "crashed"
    assert not typed(run_dir, Finished)
    checkpoint = last_checkpoint(run_dir)
    assert checkpoint is not None
    at = int(checkpoint.name.split("-")[-1])
    assert 0 < at < total

    resume(run_dir)
    wait_for(lambda: state_of(run_dir) == "finished", "the resumed run to finish")
    starts = typed(run_dir, Started)
    assert len(starts) == 2
    assert starts[1].resumed_from_step == at
    events = read_events(run_dir)
    second = events.index(starts[1])
    later = [e.step for e in events[second:] if isinstance(e, Step)]
    assert later and min(later) > at and max(later) == total
    assert typed(run_dir, Finished)[-1].step == total
    # Readers drop the steps the killed engine made after its checkpoint: no jump backwards,
    # and elapsed time carries on from the checkpoint, not from the lost steps.
    from engine.rundir.events import drop_superseded, elapsed_at_step

    kept = [e for e in drop_superseded(events) if isinstance(e, Step)]
    assert [e.step for e in kept] == sorted({e.step for e in kept})
    assert [e.elapsed_s for e in kept] == sorted(e.elapsed_s for e in kept)
    first_new = next(e for e in events[second:] if isinstance(e, Step))
    assert first_new.elapsed_s >= elapsed_at_step(events[:second], at)


@pytest.mark.slow
def test_graceful_stop_leaves_a_loadable_adapter(tiny: Path, engine_environment: Path) -> None:
    from engine.rundir.weights import find_weights
    from engine.runs.launch import launch, request_stop
    from engine.tasks.classification.predict import Predictor

    run_dir = launch(tiny_config(tiny, max_steps=5000), engine_environment)
    wait_for(lambda: typed(run_dir, Step), "the first step")
    assert request_stop(run_dir)
    wait_for(lambda: state_of(run_dir) == "stopped", "the run to stop")
    (stopped,) = typed(run_dir, Stopped)
    assert 0 < stopped.step < 5000
    assert stopped.reason == "stop requested"
    assert find_weights(run_dir) == run_dir / "adapter"
    (prediction,) = Predictor(run_dir / "adapter", threads=1).predict(["Crisp pizza crust."])
    assert prediction.label in ("negative", "positive")
    wait_for(lambda: not engine_alive(run_dir), "the engine to exit", 60)
    assert not request_stop(run_dir), "a stopped run cannot be stopped again"


def test_run_list_states(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for name, state in [
        ("a", "finished"),
        ("b", "stopped"),
        ("c", "failed"),
        ("d", "crashed"),
        ("e", "running"),
        ("f", "starting"),
    ]:
        make_fake_run(root, name, state)
    runs = {r.run_id.split("-")[-1]: r for r in list_runs(root)}
    assert {k: r.state for k, r in runs.items()} == {
        "a": "finished",
        "b": "stopped",
        "c": "failed",
        "d": "crashed",
        "e": "running",
        "f": "starting",
    }
    assert runs["c"].message == "CUDA is not a thing here"
    assert runs["a"].best_metric == pytest.approx(0.8)
    assert runs["e"].step == 10 and runs["e"].total_steps == 20
    ids = [r.run_id for r in list_runs(root)]
    assert ids == sorted(ids, reverse=True), "newest first"


def test_resumed_engine_shows_starting_then_running(tmp_path: Path) -> None:
    """A stopped run whose new engine is up but has not said `started` yet is not `stopped`."""
    import psutil

    from engine.rundir.runs import write_status

    run_dir = make_fake_run(tmp_path, "r", "stopped", t0=time.time() - 100)
    me = psutil.Process()
    write_status(run_dir, pid=os.getpid(), pid_start=me.create_time(), launched_at=time.time())
    assert state_of(run_dir) == "starting"
    EventWriter(run_dir).emit(Started(resumed_from_step=10))
    assert state_of(run_dir) == "running"


def test_two_readers_of_a_growing_file_see_the_same_events(tmp_path: Path) -> None:
    writer = EventWriter(tmp_path)
    written = [Log(message=f"line {i} " + "x" * (i % 50)) for i in range(300)]
    readers = [EventReader(tmp_path), EventReader(tmp_path)]
    seen: list[list[Event]] = [[], []]

    def write() -> None:
        for i, event in enumerate(written):
            writer.emit(event)
            if i % 20 == 0:
                time.sleep(0.001)

    t = threading.Thread(target=write)
    t.start()
    while t.is_alive():
        seen[0].extend(readers[0].read_new())
        time.sleep(0.0005)
    t.join()
    seen[0].extend(readers[0].read_new())
    seen[1].extend(readers[1].read_new())
    # A half-written line is held back until its end arrives.
    with open(tmp_path / "events.jsonl", "ab") as fh:
        fh.write(b'{"type":"log","message":"ha')
    assert readers[0].read_new() == [] and readers[1].read_new() == []
    with open(tmp_path / "events.jsonl", "ab") as fh:
        fh.write(b'lf"}\n')
    tail = [readers[0].read_new(), readers[1].read_new()]
    expected = [e.to_json() for e in written]
    assert [e.to_json() for e in seen[0]] == expected == [e.to_json() for e in seen[1]]
    assert [e.message for e in tail[0]] == ["half"] == [e.message for e in tail[1]]
