"""Pilot tests of the monitor: history in one batch, live tailing, crashes, keys, a real run."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from textual.widgets import Input, Static

from engine.config import RunConfig
from engine.rundir.events import EventWriter, parse_line
from tests.conftest import fixed_events, write_run
from tests.pilot_wait import wait_for
from tui.app import FinetuneApp
from tui.screens.monitor import MonitorScreen
from tui.screens.setup import SetupScreen
from tui.watcher import RunProgress, RunWatcher
from tui.widgets.dialogs import Confirm
from tui.widgets.event_log import EventLog
from tui.widgets.metric_tables import EvalTable, StepTable


def log_text(screen: MonitorScreen) -> str:
    """Everything written to the log pane."""
    return screen.query_one(EventLog).plain


def text_of(screen: MonitorScreen, selector: str) -> str:
    """The text a Static shows."""
    return str(screen.query_one(selector, Static).render())


def mark_alive(run_dir: Path) -> None:
    """Make the run look like its engine is this (live) process."""
    (run_dir / "status.json").write_text(
        json.dumps(
            {"pid": os.getpid(), "pid_start": psutil.Process().create_time(), "state": "running"}
        )
    )


# -- the watcher and the folded state, without a UI -----------------------------------------------
def test_watcher_sends_history_in_one_batch_and_holds_back_half_lines(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", fixed_events(total_steps=600))
    sent: list = []
    watcher = RunWatcher(run, sent.append)
    first = watcher.poll()
    assert first is not None and first.history and first.state == "finished"
    assert len(first.events) == len(fixed_events(total_steps=600))
    assert watcher.poll() is None  # nothing new, same state
    with open(run / "events.jsonl", "a") as fh:
        fh.write('{"type": "log", "message": "half')
    assert watcher.poll() is None
    with open(run / "events.jsonl", "a") as fh:
        fh.write(' a line"}\n')
    again = watcher.poll()
    assert again is not None and not again.history
    assert [e.message for e in again.events] == ["half a line"]


def test_watcher_reports_a_crashed_engine(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", fixed_events(outcome="crashed"), dead_pid=True)
    message = RunWatcher(run, lambda m: None).poll()
    assert message is not None and message.state == "crashed"


def test_progress_folds_events_deterministically() -> None:
    progress = RunProgress()
    lines = progress.apply(fixed_events(total_steps=60))
    assert progress.step == 60 and progress.total_steps == 60 and len(progress.evals) == 3
    assert progress.elapsed(now=9e18) == 31.0  # a finished run ignores the clock
    assert progress.eta() is None
    assert not any(line.text.startswith("step ") for line in lines)
    assert lines[-1].text.startswith("finished at step 60")


# -- the screen --------------------------------------------------------------------------------
async def test_history_is_drawn_once(
    fake_run: Callable[..., Path], runs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = fake_run(total_steps=3000)
    calls: list[bool] = []
    original = MonitorScreen.render_progress

    def counting(self: MonitorScreen, tables: bool = True) -> None:
        calls.append(tables)
        original(self, tables)

    monkeypatch.setattr(MonitorScreen, "render_progress", counting)
    app = FinetuneApp(runs_root, attach_to=run)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, MonitorScreen)
        await wait_for(pilot, lambda: screen.state == "finished")
        await pilot.pause(0.5)
        assert calls.count(True) == 2  # the empty frame, then the whole history at once
        table = screen.query_one(StepTable)
        assert table.get_row_at(0)[0] == "3000/3000"
        assert screen.query_one(EvalTable).row_count == 3
        assert "finished at step 3000" in log_text(screen)
        assert "step 3000/3000" in text_of(screen, "#run-times")
        assert screen.check_action("stop", ()) is None
        assert screen.check_action("resume", ()) is None


async def test_failed_run_shows_message_and_hint(
    fake_run: Callable[..., Path], runs_root: Path
) -> None:
    app = FinetuneApp(runs_root, attach_to=fake_run("failed"))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.state == "failed")
        message = text_of(screen, "#run-message")
        assert "out of memory" in message and "lower batch_size" in message
        assert "error: out of memory (lower batch_size or max_length)" in log_text(screen)
        assert "warning: loss is rising" in log_text(screen)


async def test_crashed_engine_is_noticed(fake_run: Callable[..., Path], runs_root: Path) -> None:
    app = FinetuneApp(runs_root, attach_to=fake_run("crashed"))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.state == "crashed")
        assert "engine gone" in text_of(screen, "#run-state")
        assert "ended without a final event" in text_of(screen, "#run-message")
        assert screen.check_action("resume", ()) is True
        assert screen.check_action("stop", ()) is None


async def test_live_run_is_tailed_and_quit_asks_first(tmp_path: Path, runs_root: Path) -> None:
    events = fixed_events(total_steps=60)
    cut = next(i for i, e in enumerate(events) if getattr(e, "step", 0) == 20)
    cfg = RunConfig()
    cfg.lora.lora_r = 4
    run = write_run(runs_root / "live", events[:cut])
    cfg.save(run / "config.toml")
    mark_alive(run)
    app = FinetuneApp(runs_root, attach_to=run)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, MonitorScreen)
        await wait_for(pilot, lambda: screen.state == "running")
        assert screen.query_one(StepTable).get_row_at(0)[0] == "15/60"
        assert screen.check_action("stop", ()) is True
        writer = EventWriter(run)
        for event in events[cut : cut + 6]:  # step 20, an evaluation, a checkpoint, step 25
            writer.emit(event)
        await wait_for(pilot, lambda: screen.query_one(StepTable).get_row_at(0)[0] == "25/60")
        assert screen.query_one(EvalTable).row_count == 1
        assert "ETA" in text_of(screen, "#run-times")

        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is screen)

        await pilot.press("n")  # tweak and run again: setup prefilled with this run's config
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))
        assert app.screen.query_one("#in-lora_r", Input).value == "4"
        assert (run / "events.jsonl").exists()


def test_fixed_stream_round_trips_through_json() -> None:
    for event in fixed_events(outcome="failed"):
        assert parse_line(event.to_json()) == event


# -- a real engine: start from the form, watch steps arrive, stop, find the adapter ------------------
@pytest.mark.slow
async def test_start_watch_and_stop_a_real_run(tiny_model: Path, runs_root: Path) -> None:
    app = FinetuneApp(runs_root)
    async with app.run_test(size=(100, 30)) as pilot:
        setup = app.screen
        assert isinstance(setup, SetupScreen)
        values = {
            "model_name": str(tiny_model),
            "epochs": "40",
            "logging_steps": "1",
            "threads": "1",
            "max_length": "32",
            "eval_strategy": "no",
            "save_strategy": "no",
        }
        for name, value in values.items():
            setup.fields[name].set_value(value)
        await wait_for(pilot, lambda: setup.valid and setup.model_modules)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen))
        monitor = app.screen
        assert isinstance(monitor, MonitorScreen)
        table = monitor.query_one(StepTable)
        await wait_for(pilot, lambda: table.row_count >= 2, timeout=180)
        first = table.get_row_at(0)[0]
        await wait_for(pilot, lambda: table.get_row_at(0)[0] != first, timeout=60)
        assert monitor.state == "running"
        await pilot.press("s")
        await wait_for(pilot, lambda: monitor.state == "stopped", timeout=120)
        assert (monitor.run_dir / "adapter" / "adapter_config.json").is_file()
        assert "stopped at step" in log_text(monitor)
        assert monitor.check_action("tryit", ()) is True
        assert monitor.check_action("stop", ()) is None
        await pilot.press("n")  # back to the same form, to tweak and run again
        await wait_for(pilot, lambda: app.screen is setup)
        assert len(app.screen_stack) == 2 and setup.fields["epochs"].value == "40"


async def test_confusion_matrix_of_the_latest_evaluation(tmp_path: Path) -> None:
    """`m` shows the newest evaluation's confusion matrix and per-class table instead of the log."""
    from engine.rundir.events import Eval
    from tests.conftest import fixed_events, write_run
    from tui.widgets.confusion import ConfusionView

    events = fixed_events()
    events.append(
        Eval(
            time=events[-1].time + 1,
            step=60,
            epoch=3.0,
            metrics={
                "accuracy": 0.75,
                "f1": 0.74,
                "loss": 0.5,
                "labels": ["negative", "positive"],
                "confusion": [[13, 3], [5, 11]],
                "per_class": {
                    "negative": {"precision": 0.72, "recall": 0.81, "f1": 0.76, "support": 16},
                    "positive": {"precision": 0.79, "recall": 0.69, "f1": 0.73, "support": 16},
                },
            },
        )
    )
    run_dir = write_run(tmp_path / "runs" / "demo", events)
    app = FinetuneApp(tmp_path / "runs", attach_to=run_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.state)
        monitor = app.screen
        await wait_for(pilot, lambda: monitor.check_action("toggle_metrics", ()) is True)
        await pilot.press("m")
        await pilot.pause()
        view = monitor.query_one(ConfusionView)
        assert view.display
        from rich.console import Console

        from tui.widgets.confusion import metrics_renderable

        console = Console(width=110, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
        console.print(metrics_renderable(view.metrics, view.step))
        text = console.export_text()
        assert view.step == 60
        assert "negative" in text and "positive" in text
        assert "13" in text and "11" in text


def test_long_runs_keep_their_step_and_epoch_whole_in_the_table() -> None:
    """22129/100000 does not fit the step column: it is shortened (22.1k/100k), never cut."""
    from tui.widgets.metric_tables import STEP_COLUMNS, epoch_text, step_text

    width = STEP_COLUMNS[0][1]
    assert step_text(5, 60) == "5/60"
    assert step_text(22129, 100000) == "22.1k/100k"
    assert step_text(999_999, 1_000_000) == "1.0M/1.0M"
    assert step_text(123, 0) == "123"
    for step, total in ((1, 9), (99999, 99999), (123456, 7654321), (10**9, 10**9)):
        assert len(step_text(step, total)) <= width
    assert [epoch_text(e) for e in (0.5, 12.345, 650.8)] == ["0.50", "12.3", "651"]


async def test_try_and_export_turn_on_with_a_checkpoint(
    fake_run: Callable[..., Path], runs_root: Path
) -> None:
    """A run with a checkpoint on disk (no final adapter) can be tried and exported."""
    run = fake_run("failed")
    app = FinetuneApp(runs_root, attach_to=run)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.state == "failed")
        assert screen.check_action("tryit", ()) is None
        assert "No weights saved yet" in screen.why_not("tryit")
    checkpoint = run / "checkpoints" / "checkpoint-50"
    checkpoint.mkdir(parents=True)
    (checkpoint / "adapter_config.json").write_text("{}")
    (checkpoint / "trainer_state.json").write_text("{}")  # a complete checkpoint
    app = FinetuneApp(runs_root, attach_to=run)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.state == "failed")
        assert screen.check_action("tryit", ()) is True
        assert screen.check_action("export", ()) is True
