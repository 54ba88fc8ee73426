"""The tweak loop in the UI: queue and sweep from the form, the queue in the run list, compare,
and the small things that got in the way (file picker, help text, switches, paths, keys)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from engine.config import RunConfig
from engine.rundir.events import Checkpoint, Eval, EventWriter, Phase, Started, Step, Stopped
from engine.runs import queue
from tests.fakeruns import make_fake_run
from tests.pilot_wait import wait_for
from tests.tui.test_tui_setup import field, type_into
from tui.app import FinetuneApp
from tui.screens.compare import CompareScreen
from tui.screens.monitor import MonitorScreen
from tui.screens.runs import RunsScreen
from tui.screens.setup import SetupScreen
from tui.watcher import RunProgress
from tui.widgets.dialogs import Confirm, PathPrompt
from tui.widgets.file_picker import DataFileTree, FilePicker


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Queued runs are not started (no engine in UI tests); returns what would have started."""
    started: list[Path] = []
    monkeypatch.setattr("engine.runs.queue.start_next", lambda root, exclude=None: None)
    return started


async def form(pilot: Pilot) -> SetupScreen:
    """The setup screen once its fields are valid."""
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen) and app.screen.valid)
    return app.screen  # type: ignore[return-value]


# -- queue and sweep from the form ------------------------------------------------------------------
async def test_a_sweep_typed_in_the_form_queues_its_grid(runs_root: Path, no_engine) -> None:
    app = FinetuneApp(runs_root)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await form(pilot)
        await type_into(pilot, app, "learning_rate", "3e-4,1e-3,2e-3")
        await wait_for(pilot, lambda: screen.valid and screen.sweep_values())
        assert screen.sweep_values() == {"learning_rate": [3e-4, 1e-3, 2e-3]}
        status = str(screen.query_one("#setup-status", Static).render())
        assert "Sweep: 3 runs (learning rate ×3)" in status
        assert str(screen.query_one("#start-button").label) == "Queue sweep ^r"
        await type_into(pilot, app, "learning_rate", "3e-4,x")
        assert "learning_rate must be a number such as 0.1 or 1e-3 (got 'x')" in str(
            field(app, "learning_rate").query_one(".field-error", Static).render()
        )
        await type_into(pilot, app, "learning_rate", "3e-4,1e-3,2e-3")
        await wait_for(pilot, lambda: screen.valid)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        entries = queue.entries(runs_root)
        assert [e.config.training.learning_rate for e in entries] == [3e-4, 1e-3, 2e-3]
        assert len({e.sweep_id for e in entries}) == 1 and entries[0].sweep_id
        runs = app.screen
        table = runs.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        assert [str(table.get_row_at(i)[1]) for i in range(3)] == [
            "queued #1",
            "queued #2",
            "queued #3",
        ]
        assert [str(table.get_row_at(i)[3]) for i in range(3)] == ["3e-04", "1e-03", "2e-03"]
        # The queue: reorder, cancel, and the sweep table of queued runs.
        await pilot.press("shift+down")
        await wait_for(pilot, lambda: str(table.get_row_at(1)[3]) == "3e-04")
        assert [e.config.training.learning_rate for e in queue.entries(runs_root)][:2] == [
            1e-3,
            3e-4,
        ]
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        sweep = app.screen
        await wait_for(pilot, lambda: sweep.query_one(DataTable).row_count == 3)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is runs)
        await pilot.press("d")
        await wait_for(pilot, lambda: len(queue.entries(runs_root)) == 2)


async def test_add_to_queue_and_edit_the_queued_run(runs_root: Path, no_engine) -> None:
    app = FinetuneApp(runs_root)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await form(pilot)
        assert str(screen.query_one("#queue-button").label) == "Add to queue ^g"
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        (entry,) = queue.entries(runs_root)
        runs = app.screen
        await wait_for(pilot, lambda: runs.query_one(DataTable).row_count == 1)
        detail = str(runs.query_one("#detail", Static).render())
        assert "queued #1" in detail and "enter edits" in detail
        await pilot.press("enter")  # a queued run opens in the form, to edit
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))
        edit = await form(pilot)
        assert edit.queue_entry == entry.entry_id
        assert "Save to queue" in str(edit.query_one("#queue-button").label)
        await type_into(pilot, app, "learning_rate", "5e-4")
        await wait_for(pilot, lambda: edit.valid)
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        (edited,) = queue.entries(runs_root)
        assert edited.entry_id == entry.entry_id and edited.config.training.learning_rate == 5e-4


# -- the form's small things --------------------------------------------------------------------------
async def test_file_picker_takes_a_typed_path_home_and_the_last_folder(
    runs_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "data" / "train.jsonl").write_text('{"text": "a", "label": 0}\n')
    elsewhere = tmp_path / "far" / "away"
    elsewhere.mkdir(parents=True)
    (elsewhere / "eval.jsonl").write_text('{"text": "b", "label": 1}\n')
    monkeypatch.setenv("HOME", str(home))
    app = FinetuneApp(runs_root)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await form(pilot)
        assert screen.query("#browse-eval_file_path"), "the eval file has a Browse button too"
        screen.action_browse("data_file_path")
        await wait_for(pilot, lambda: isinstance(app.screen, FilePicker))
        picker = app.screen
        await pilot.press("tilde")  # home in one key
        await wait_for(pilot, lambda: picker.query_one(DataFileTree).path == home)
        await pilot.press("slash")  # type a path anywhere: one line, no arrow walk
        editor = picker.query_one("#picker-folder", Input)
        assert editor.has_focus and editor.value == f"{home}/"
        # Typed after the folder shown, an absolute path starts over (as in Emacs).
        editor.insert_text_at_cursor(str(elsewhere / "ev"))
        await wait_for(pilot, lambda: editor._suggestion.endswith("eval.jsonl"))
        await pilot.press("tab")  # completes the name
        assert editor.value == f"{home}/{elsewhere}/eval.jsonl" and editor.has_focus
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))
        assert field(app, "data_file_path").value == str(elsewhere / "eval.jsonl")
        # The next picker offers the last folder ('-').
        screen.action_browse("eval_file_path")
        await wait_for(pilot, lambda: isinstance(app.screen, FilePicker))
        picker = app.screen
        await pilot.press("tilde")
        await pilot.press("minus")
        await wait_for(pilot, lambda: picker.query_one(DataFileTree).path == elsewhere)
        # A name typed after '/' is looked for inside the folder shown.
        await pilot.press("slash")
        editor = picker.query_one("#picker-folder", Input)
        editor.insert_text_at_cursor("eval.jsonl")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))
        assert field(app, "eval_file_path").value == str(elsewhere / "eval.jsonl")


async def test_help_switch_text_and_long_paths_at_80_columns(runs_root: Path) -> None:
    app = FinetuneApp(runs_root)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await form(pilot)
        screen.query_one("TabbedContent").active = "tab-lora"
        await pilot.pause()
        dora = field(app, "use_dora")
        assert str(dora.query_one(".switch-state", Static).render()) == "off"
        dora.editor.focus()
        await pilot.press("space")
        await wait_for(pilot, lambda: str(dora.query_one(".switch-state", Static).render()) == "on")
        # The focused field's whole help, when its row cuts it.
        screen.query_one("TabbedContent").active = "tab-training"
        await pilot.pause()
        field(app, "learning_rate").editor.focus()
        line = screen.query_one("#help-line", Static)
        await wait_for(pilot, lambda: line.display and "learning rate" in str(line.render()))
        assert "LoRA likes ~5e-4..2e-3" in str(line.render())
        # A long absolute path shows its start when the field is not being edited.
        long = "/very/long/absolute/path/to/some/deeply/nested/folder/of/data/train.jsonl"
        data = field(app, "data_file_path")
        data.set_value(long)
        await pilot.pause()
        assert data.editor.cursor_position == 0


async def test_save_settings_suggests_home_and_asks_before_replacing(
    runs_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "finetune.toml").write_text("old")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    app = FinetuneApp(runs_root)
    async with app.run_test(size=(80, 24)) as pilot:
        await form(pilot)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, PathPrompt))
        prompt = app.screen
        editor = prompt.query_one(Input)
        assert editor.value == "~/finetune-2.toml", "a free name under home, not the cwd"
        editor.value = "~/finetune.toml"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))
        assert (home / "finetune.toml").read_text() == "old"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, PathPrompt))
        await pilot.press("enter")
        await wait_for(pilot, lambda: (home / "finetune-2.toml").is_file())
        assert RunConfig.load(home / "finetune-2.toml").to_dict() == RunConfig().to_dict()


# -- the monitor ---------------------------------------------------------------------------------------
def test_elapsed_never_goes_back_across_stop_and_resume() -> None:
    p = RunProgress()
    t = 1000.0
    p.apply([Started(time=t, total_steps=100), Step(time=t + 60, step=50, elapsed_s=60.0)])
    p.apply([Checkpoint(time=t + 61, step=50, path="c/checkpoint-50", reason="stop")])
    p.apply([Stopped(time=t + 62, step=50)])
    p.state = "stopped"
    stopped = p.elapsed(now=t + 500)
    # Resumed 10 minutes later: while the engine loads, the time stands still.
    p.state = "starting"
    p.apply([Phase(time=t + 660, name="loading data")])
    # 61: the step's 60 s and the stop's save, where the resumed engine's clock carries on.
    assert p.elapsed(now=t + 670) == 61.0 == stopped
    p.apply([Started(time=t + 670, total_steps=100)])
    p.state = "running"
    lines = p.apply(
        [
            Checkpoint(time=t + 671, step=50, path="c/checkpoint-50", reason="stop"),
            Step(time=t + 680, step=55, elapsed_s=66.0),
        ]
    )
    assert p.elapsed(now=t + 681) == 67.0
    assert not any("checkpoint" in line.text for line in lines), "one line per checkpoint"
    p.apply([Eval(time=t + 700, step=100, metrics={"accuracy": 0.8})])
    p.apply([Eval(time=t + 701, step=100, metrics={"accuracy": 0.9})])
    assert [e.metrics["accuracy"] for e in p.evals] == [0.9], "one row per step"


def test_a_stop_mid_epoch_neither_evaluates_nor_saves_twice(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from engine.training.callback import EventsCallback, Throughput

    cb = EventsCallback(EventWriter(tmp_path), tmp_path, Throughput(), {})
    cb.stop_reason = "stop requested"
    state = SimpleNamespace(global_step=7, epoch=0.35)
    cb.on_save(SimpleNamespace(output_dir=str(tmp_path)), state, None)
    control = SimpleNamespace(should_evaluate=True, should_save=True)
    cb.on_epoch_end(None, state, control)
    assert not control.should_evaluate and not control.should_save


async def test_tweak_says_at_once_and_v_leaves_the_matrix(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    run = make_fake_run(root, "a", "finished")
    app = FinetuneApp(root, attach_to=run)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.state)
        monitor = app.screen
        await pilot.press("m")
        assert monitor.has_class("-view-metrics")
        await pilot.press("v")
        assert not monitor.has_class("-view-metrics") and monitor.has_class("-view-plot")
        said: list[str] = []
        original = app.notify
        app.notify = lambda message, **kw: said.append(message) or original(message, **kw)  # type: ignore[method-assign]
        await pilot.press("n")
        assert any("Opening the setup form" in m for m in said), said
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))


# -- compare ----------------------------------------------------------------------------------------------
async def test_compare_is_live_sortable_and_names_runs_readably(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    done = make_fake_run(root, "base", "finished", accuracy=0.7)
    live = make_fake_run(root, "base", "running", accuracy=0.6, steps=4)
    cfg = RunConfig.load(live / "config.toml")
    cfg.training.learning_rate = 2e-3
    cfg.save(live / "config.toml")
    app = FinetuneApp(root)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(CompareScreen([done, live]))
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        screen = app.screen
        await wait_for(pilot, lambda: screen.query(DataTable))
        table = screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        labels = [str(c.label) for c in table.columns.values()]
        assert labels[:4] == ["run", "state", "best acc", "lr"], labels
        names = [str(table.get_row_at(i)[0]) for i in range(2)]
        assert names[0] != names[1] and all("base" in n for n in names)
        # Sort by best (o cycles columns; a header click works too).
        screen.sort_column, screen.sort_reverse = "best", True
        screen._redraw()
        assert [str(table.get_row_at(i)[2]) for i in range(2)] == ["0.700", "0.600"]
        await pilot.press("O")
        assert [str(table.get_row_at(i)[2]) for i in range(2)] == ["0.600", "0.700"]
        # The live run gets better: the table follows without a key press.
        EventWriter(live).emit(Eval(time=2e9, step=5, metrics={"accuracy": 0.95}))
        await wait_for(pilot, lambda: "0.950" in [str(table.get_row_at(i)[2]) for i in range(2)])


# -- notifications ------------------------------------------------------------------------------------------
def test_the_bell_rings_only_when_asked_and_once(tmp_path: Path, monkeypatch) -> None:
    from tui.endings import EndingWatcher

    root = tmp_path / "runs"
    quiet = make_fake_run(root, "quiet", "running")
    loud = make_fake_run(root, "loud", "running")
    cfg = RunConfig.load(loud / "config.toml")
    cfg.output.notify = "osc9"
    cfg.save(loud / "config.toml")
    watcher = EndingWatcher(root)
    assert watcher.poll() == []
    alive = {quiet, loud}
    monkeypatch.setattr("tui.endings.engine_alive", lambda p: p in alive)
    monkeypatch.setattr("engine.rundir.runs.engine_alive", lambda p: p in alive)
    alive.clear()
    (rings,) = [watcher.poll()]
    assert len(rings) == 1 and rings[0][0] == "osc9" and loud.name in rings[0][1]
    assert "the queue is done" in rings[0][1]
    assert watcher.poll() == []


async def test_ring_sends_osc9_to_the_terminal(tmp_path: Path) -> None:
    app = FinetuneApp(tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        written: list[str] = []
        driver = app._driver
        assert driver is not None
        driver.write = written.append  # type: ignore[method-assign]
        app.ring("osc9", "run x finished")
        await pilot.pause()
        assert written == ["\x1b]9;run x finished\x07"]


def test_free_path_counts_on_instead_of_stacking_suffixes(tmp_path: Path) -> None:
    from tui.paths import free_path

    (tmp_path / "x-adapter").mkdir()
    assert free_path(tmp_path / "x-adapter").name == "x-adapter-2"
    (tmp_path / "x-adapter-2").mkdir()
    assert free_path(tmp_path / "x-adapter-2").name == "x-adapter-3"
    (tmp_path / "run.toml").write_text("")
    assert free_path(tmp_path / "run.toml").name == "run-2.toml"
