"""Nothing lost, nothing hung: output folders, atomic writes, the run lock, Ctrl-C, stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.core.errors import UserError
from engine.rundir.events import (
    Checkpoint,
    Eval,
    EventWriter,
    Failed,
    Finished,
    Log,
    Phase,
    Started,
    Step,
    Stopped,
    drop_superseded,
    elapsed_at_step,
    parse_line,
    read_events,
)
from engine.rundir.lock import acquire_run_lock
from engine.rundir.outputs import MARKER, check_output_dir, write_marker
from engine.rundir.runs import (
    STATUS_FILE,
    engine_alive,
    list_runs,
    new_run_dir,
    read_status,
    run_info,
    write_status,
)
from engine.training.train import run_training
from tests.fakeruns import BAD_EVENTS, REPO, engine_env, make_fake_run, malformed_runs
from tests.reliability_helpers import enospc, leftovers, mount_tmpfs, tiny_cfg, typed


# -- output folders -------------------------------------------------------------------------
def test_output_folder_rules(tmp_path: Path) -> None:
    run_a, run_b = tmp_path / "runs" / "a", tmp_path / "runs" / "b"
    for r in (run_a, run_b):
        r.mkdir(parents=True)
        RunConfig().save(r / "config.toml")
        write_status(r, state="finished")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty") as info:
        check_output_dir(mine, run_dir=run_a)
    assert info.value.field == "output.output_dir"
    assert check_output_dir(mine, run_dir=run_a, overwrite=True) == mine.resolve()
    out = tmp_path / "out"
    out.mkdir()
    (out / "adapter_config.json").write_text("{}")
    write_marker(out, run_a)
    assert check_output_dir(out, run_dir=run_a) == out.resolve()  # its own (a resume)
    with pytest.raises(UserError, match="another run"):
        check_output_dir(out, run_dir=run_b)
    with pytest.raises(UserError, match="another run"):
        check_output_dir(run_a / "adapter", run_dir=run_b)  # inside another run's directory
    with pytest.raises(UserError, match="run directory itself"):
        check_output_dir(run_a.parent, run_dir=run_a)
    assert check_output_dir(tmp_path / "new" / "deep", run_dir=run_a)  # created later
    assert not (tmp_path / "new").exists()  # the check leaves nothing behind
    assert leftovers(tmp_path) == []


def test_a_read_only_output_folder_is_refused_before_training(tmp_path: Path) -> None:
    """Root writes anywhere, so a read-only mount stands in for an unwritable folder."""
    folder = tmp_path / "ro"
    if not mount_tmpfs(folder, "1m", "ro"):
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        with pytest.raises(UserError, match="cannot write"):
            check_output_dir(folder / "adapter")
        with pytest.raises(UserError, match="cannot write"):
            check_output_dir(folder)
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def test_launch_refuses_a_user_folder_before_making_a_run(tmp_path: Path) -> None:
    """The TUI and any queue start runs through launch(): the same check, before anything."""
    from engine.runs.launch import launch

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("# mine")
    cfg = RunConfig()
    cfg.output.output_dir = str(mine)
    with pytest.raises(UserError) as info:
        launch(cfg, tmp_path / "runs")
    assert info.value.field == "output.output_dir"
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_engine_checks_outputs_before_the_first_step(tiny_model: Path, runs_root: Path) -> None:
    """A config that reaches the engine another way (an edited file, a queue) is checked too."""
    mine = runs_root.parent / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"mine": 1}')
    cfg = tiny_cfg(tiny_model)
    cfg.output.output_dir = str(mine)
    run_dir = new_run_dir(cfg, runs_root)
    assert run_training(run_dir) == 2
    assert not typed(run_dir, Step)
    assert "not empty" in typed(run_dir, Failed)[-1].message
    assert (mine / "config.json").read_text() == '{"mine": 1}'
    assert sorted(p.name for p in mine.iterdir()) == ["config.json"]


def test_overwrite_writes_by_rename_and_keeps_other_files(
    tiny_model: Path, runs_root: Path
) -> None:
    mine = runs_root.parent / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    cfg = tiny_cfg(tiny_model)
    cfg.output.output_dir = str(mine)
    cfg.output.overwrite = True
    run_dir = new_run_dir(cfg, runs_root)
    assert run_training(run_dir) == 0
    assert (mine / "notes.txt").read_text() == "keep me"
    assert (mine / "adapter_config.json").is_file()
    assert json.loads((mine / MARKER).read_text())["run_dir"] == str(run_dir)
    assert leftovers(runs_root.parent) == []
    # A second run may not take this adapter without --overwrite.
    with pytest.raises(UserError, match="another run"):
        check_output_dir(mine, run_dir=runs_root / "other")


# -- run state written atomically; an empty config is an error -----------------------------
def test_empty_config_is_an_error_never_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("")
    with pytest.raises(UserError, match="empty"):
        RunConfig.load(path)


def test_config_save_on_a_full_disk_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.toml"
    cfg = RunConfig()
    cfg.training.lora_r = 4 if hasattr(cfg.training, "lora_r") else 0
    cfg.save(path)
    before = path.read_bytes()

    def full(*_a: object) -> int:
        raise enospc()

    monkeypatch.setattr("engine.core.atomic.os.write", full)
    changed = RunConfig()
    changed.lora.lora_r = 64
    with pytest.raises(OSError):
        changed.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_status_falls_back_to_rewriting_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_status(tmp_path, state="running", pid=1)

    def full(*_a: object, **_k: object) -> None:
        raise enospc()

    monkeypatch.setattr("engine.core.atomic.atomic_write_bytes", full)
    with pytest.raises(OSError):
        write_status(tmp_path, state="failed")
    write_status(tmp_path, in_place_fallback=True, state="failed")
    assert read_status(tmp_path)["state"] == "failed"
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATUS_FILE]


# -- one engine per run ---------------------------------------------------------------------
def test_the_run_lock_is_exclusive_and_marks_the_engine_alive(tmp_path: Path) -> None:
    lock = acquire_run_lock(tmp_path)
    try:
        assert engine_alive(tmp_path)
        with pytest.raises(UserError, match="another engine"):
            acquire_run_lock(tmp_path, wait_s=0.1)
    finally:
        lock.release()
    assert not engine_alive(tmp_path)
    acquire_run_lock(tmp_path).release()


@pytest.mark.slow
def test_two_resumes_at_once_exactly_one_trains(tiny_model: Path, tmp_path: Path) -> None:
    """Two real engines race for one run: one trains it, the other exits 2 with one line."""
    root = tmp_path / "runs"
    run_dir = new_run_dir(tiny_cfg(tiny_model, max_steps=20), root)
    cmd = [sys.executable, "-m", "engine.cli", "--runs-root", str(root), "resume", run_dir.name]
    procs = [
        subprocess.Popen(
            cmd,
            cwd=REPO,
            env=engine_env(root),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, _, err in results if code == 2)
    lines = loser.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in loser, loser
    assert "another engine" in lines[0] or "still going" in lines[0]
    assert len(typed(run_dir, Started)) == 1
    assert len(typed(run_dir, Finished)) == 1
    assert run_info(run_dir).state == "finished"


# -- threads: take a share, say so ------------------------------------------------------------
def test_plan_threads_rules() -> None:
    from engine.training.cores import plan_threads

    assert plan_threads(0, 8, [], 0.0).threads == 8
    assert plan_threads(0, 8, [], 0.0).note == ""
    two = plan_threads(0, 2, [2], 2.0)
    assert two.threads == 1 and "1 other engine" in two.note
    assert plan_threads(0, 8, [4, 2], 6.0).threads == 2
    busy = plan_threads(0, 4, [], 3.0)  # another program keeps three cores busy
    assert busy.threads == 1 and "other programs" in busy.note
    asked = plan_threads(2, 2, [2], 2.0)
    assert asked.threads == 2 and "slow down" in asked.note


def test_a_new_engine_takes_its_share(
    tiny_model: Path, runs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("engine.core.hardware.available_cores", lambda: 2)
    monkeypatch.setattr("engine.training.cores.cpu_readings", lambda: (0.0, 0.0))
    other = make_fake_run(runs_root, "other", "running")  # this test process plays the engine
    write_status(other, threads=2)
    run_dir = new_run_dir(tiny_cfg(tiny_model, threads=0, max_steps=2), runs_root)
    assert run_training(run_dir) == 0
    (started,) = typed(run_dir, Started)
    assert started.threads == 1
    notes = [e.message for e in typed(run_dir, Log) if e.level == "warning"]
    assert any("taking 1 of 2 cores" in m for m in notes), notes
    assert read_status(run_dir)["threads"] == 1


def test_a_running_engine_gives_cores_back_and_takes_them_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from engine.training.cores import Rebalancer

    monkeypatch.setattr("engine.core.hardware.available_cores", lambda: 2)
    root = tmp_path / "runs"
    mine = make_fake_run(root, "mine", "finished")
    before = torch.get_num_threads()
    try:
        balancer = Rebalancer(mine, requested=0, threads=2, every_s=0)
        assert balancer.check() == ""
        other = make_fake_run(root, "other", "running")
        write_status(other, threads=2)
        assert "threads 2 -> 1" in balancer.check()
        assert torch.get_num_threads() == 1
        write_status(other, state="finished")
        assert "threads 1 -> 2" in balancer.check()
    finally:
        torch.set_num_threads(before)


# -- one bad run directory never hides the others ----------------------------------------------
@pytest.mark.parametrize("line", BAD_EVENTS)
def test_a_malformed_event_never_raises(line: str) -> None:
    event = parse_line(line)
    if event is not None:
        from engine.cli.event_lines import format_event

        format_event(event)
        if isinstance(event, Eval):
            assert event.metrics == {}


def test_the_run_list_survives_malformed_runs(tmp_path: Path, capsys) -> None:
    from engine.cli.commands import main

    root = tmp_path / "runs"
    good, bad_event, list_status, pid_status, no_dir, empty_cfg = malformed_runs(root)
    infos = {i.path.name: i for i in list_runs(root)}
    assert len(infos) == 6
    assert infos[good.name].state == "finished"
    assert infos[bad_event.name].state == "failed"  # its last (malformed) event is a failure
    assert infos[list_status.name].state == "stopped"
    assert infos[pid_status.name].state == "stopped"
    assert infos[no_dir.name].state == "unreadable"
    assert "IsADirectoryError" in infos[no_dir.name].message
    assert "empty" in infos[empty_cfg.name].message
    for args in (["runs"], ["runs", "--json"]):
        assert main(["--runs-root", str(root), *args]) == 0
        out, err = capsys.readouterr()
        assert err == "" and good.name[:40] in out


# -- max_length bounded by the model's positions ------------------------------------------------
def test_max_length_beyond_positions_is_refused_up_front(tiny_model: Path) -> None:
    from types import SimpleNamespace

    from engine.models.checks import check_max_length, model_positions

    cfg = RunConfig()
    cfg.model.model_name = str(tiny_model)
    cfg.model.max_length = 128
    check_max_length(cfg)
    cfg.model.max_length = 129
    with pytest.raises(UserError, match="128 positions") as info:
        check_max_length(cfg)
    assert info.value.field == "model.max_length"
    roberta = SimpleNamespace(model_type="roberta", max_position_embeddings=514, pad_token_id=1)
    assert model_positions(roberta) == 512
    assert model_positions(SimpleNamespace(model_type="gpt2", n_positions=1024)) == 1024


# -- predict on pickle weights: the right reason --------------------------------------------------
def test_a_pickle_base_of_a_run_trained_with_allow_pickle_says_so(
    tmp_path: Path, tiny_model: Path
) -> None:
    import shutil

    from engine.models.checks import check_inference_weights

    base = tmp_path / "base"
    base.mkdir()
    shutil.copy(tiny_model / "config.json", base / "config.json")
    (base / "pytorch_model.bin").write_bytes(b"x")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    (adapter / "adapter_model.safetensors").write_bytes(b"x")
    cfg = RunConfig()
    cfg.model.allow_pickle_weights = True
    cfg.save(adapter / "run_config.toml")
    with pytest.raises(UserError, match="trained with allow_pickle_weights") as info:
        check_inference_weights(adapter)
    assert info.value.where == str(base)


# -- kill -9 then resume: readers drop the lost steps -------------------------------------------
def _segment(start: int, stop: int, t0: float, resumed: int = 0) -> list:
    events: list = [Started(time=t0, resumed_from_step=resumed, total_steps=20)]
    for s in range(start, stop + 1):
        events.append(Step(time=t0 + s, step=s, total_steps=20, elapsed_s=float(s - start + 1)))
        if s % 4 == 0:
            events.append(Checkpoint(time=t0 + s + 0.1, step=s))
            events.append(Eval(time=t0 + s + 0.2, step=s, metrics={"accuracy": s / 100}))
    return events


def test_readers_drop_the_killed_engines_steps_after_the_checkpoint(tmp_path: Path) -> None:
    from tui.watcher import RunProgress

    first = _segment(1, 10, 1000.0)  # killed after step 10; last checkpoint at 8
    second = _segment(9, 20, 2000.0, resumed=8)
    events = first + second
    kept = [e.step for e in drop_superseded(events) if isinstance(e, Step)]
    assert kept == list(range(1, 21))
    assert elapsed_at_step(first, 8) == pytest.approx(8.1)
    progress = RunProgress()
    progress.apply(first)
    progress.apply(second[:1])
    assert [s.step for s in progress.steps] == list(range(1, 9))
    assert all(e.step <= 8 for e in progress.evals)
    progress.apply(second[1:])
    steps = [s.step for s in progress.steps]
    assert steps == sorted(set(steps))
    # The run list's best metric ignores the lost evaluation at step... of the dead engine.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    RunConfig().save(run_dir / "config.toml")
    writer = EventWriter(run_dir)
    lost = Eval(time=1010.5, step=10, metrics={"accuracy": 0.99})
    for e in first + [lost] + second:
        writer.emit(e)
    assert run_info(run_dir).best_metric == pytest.approx(0.20)


# -- stop mid-epoch: save at once, no end-of-epoch evaluation; a second Ctrl-C exits --------------
def test_stop_mid_epoch_saves_without_evaluating(tiny_model: Path, runs_root: Path) -> None:
    cfg = tiny_cfg(tiny_model, max_steps=0, epochs=1, eval_strategy="epoch", save_strategy="epoch")
    run_dir = new_run_dir(cfg, runs_root)

    def stop_at_step_2(event) -> None:
        if isinstance(event, Step) and event.step == 2:
            (run_dir / "stop.request").write_text("now")

    assert run_training(run_dir, listeners=[stop_at_step_2]) == 0
    events = read_events(run_dir)
    assert not [e for e in events if isinstance(e, Eval)]
    assert not [e for e in events if isinstance(e, Phase) and e.name == "evaluating"]
    (stopped,) = [e for e in events if isinstance(e, Stopped)]
    assert stopped.step < typed(run_dir, Started)[0].total_steps
    assert len(typed(run_dir, Checkpoint)) == 1


def test_a_second_interrupt_forces_the_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.training.callback import EventsCallback, Throughput

    class Exited(Exception):
        pass

    def fake_exit(code: int) -> None:
        raise Exited(code)

    monkeypatch.setattr(os, "_exit", fake_exit)
    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    callback = EventsCallback(EventWriter(tmp_path), tmp_path, Throughput(), {})
    try:
        callback.install_signal_handlers()
        os.kill(os.getpid(), signal.SIGINT)
        assert callback.stop_reason == "signal SIGINT"
        with pytest.raises(Exited):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(100):  # the handler runs between bytecodes
                pass
    finally:
        signal.signal(signal.SIGINT, saved[0])
        signal.signal(signal.SIGTERM, saved[1])
    (failed,) = typed(tmp_path, Failed)
    assert "interrupted twice" in failed.message
    assert read_status(tmp_path)["state"] == "failed"


# -- resume a finished run: refused, nothing written ----------------------------------------
def test_resume_of_a_finished_run_is_refused(tiny_model: Path, runs_root: Path) -> None:
    from engine.runs.launch import resume

    run_dir = new_run_dir(tiny_cfg(tiny_model, max_steps=2), runs_root)
    assert run_training(run_dir) == 0
    before = (run_dir / "events.jsonl").read_bytes()
    with pytest.raises(UserError, match="already finished"):
        run_training(run_dir, resume=True)
    with pytest.raises(UserError, match="already finished"):
        resume(run_dir)
    assert (run_dir / "events.jsonl").read_bytes() == before
    assert len(typed(run_dir, Finished)) == 1
    assert run_info(run_dir).state == "finished"
