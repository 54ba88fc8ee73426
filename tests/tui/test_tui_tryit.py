"""The try-it screen and the export dialog, on a tiny trained run."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console
from textual.css.query import NoMatches
from textual.pilot import Pilot
from textual.widgets import Input, Static, TextArea

from tests.fakeruns import make_fake_run, train_tiny, varied_tiny_bert
from tui.app import FinetuneApp
from tui.screens.export import ExportScreen
from tui.screens.tryit import TryItScreen
from tui.widgets.dialogs import Confirm
from tui.widgets.probabilities import PredictionView

pytestmark = pytest.mark.slow

SENTENCE = "crisp pizza crust and generous toppings"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained run (its runs root holds nothing else)."""
    base = tmp_path_factory.mktemp("tryit")
    model = varied_tiny_bert(base / "tiny")
    return train_tiny(base / "runs", model, "--max_steps", "10", "--logging_steps", "5")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


async def until(pilot: Pilot, check: Callable[[], object], what: str, limit: float = 60) -> None:
    """Let the app (and its workers) work until `check` holds."""
    for _ in range(int(limit / 0.05)):
        try:
            if check():
                return
        except NoMatches:  # the screen is still composing
            pass
        await pilot.pause(0.05)
    screen = pilot.app.screen
    detail = [str(w.render()) for w in screen.query("#result, #status")]
    raise AssertionError(f"gave up waiting for {what}: {detail} {pilot.app.workers}")


async def open_tryit(pilot: Pilot, run_dir: Path) -> TryItScreen:
    app = pilot.app
    app.open_tryit(run_dir)  # type: ignore[attr-defined]
    await until(pilot, lambda: isinstance(app.screen, TryItScreen), "the try-it screen")
    return app.screen  # type: ignore[return-value]


def status_text(screen: TryItScreen) -> str:
    return str(screen.query_one("#status", Static).render())


async def test_typed_sentence_gets_the_predictors_label(trained: Path) -> None:
    from engine.rundir.weights import find_weights
    from engine.tasks.classification.predict import Predictor

    expected = Predictor(find_weights(trained)).predict([SENTENCE, "cold fries"])
    app = FinetuneApp(runs_root=trained.parent)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_tryit(pilot, trained)
        await until(pilot, lambda: "ready" in status_text(screen), "the model to load")
        assert "final adapter" in str(screen.query_one("#source", Static).render())
        assert screen.query_one("#texts", TextArea).has_focus
        await pilot.press(*["space" if c == " " else c for c in SENTENCE])
        await pilot.press("enter", *"cold", "space", *"fries")
        await pilot.pause()
        await pilot.press("ctrl+r")
        await until(pilot, lambda: len(screen.predictions) == 2, "two predictions")
        for got, want in zip(screen.predictions, expected, strict=True):
            assert got.text == want.text and got.label == want.label
            for label, p in want.probabilities.items():
                assert got.probabilities[label] == pytest.approx(p, abs=1e-5)
        await pilot.pause()
        views = list(screen.query(PredictionView))
        assert len(views) == 2
        console = Console(width=80, record=True, file=io.StringIO())
        console.print(views[0].build())
        shown = console.export_text()
        assert expected[0].label in shown and "%" in shown and "█" in shown

        await pilot.press("ctrl+l")
        assert not screen.predictions and not list(screen.query(PredictionView))
        await pilot.press("ctrl+r")
        assert "type a text first" in status_text(screen)


async def test_no_adapter_yet_says_so(tmp_path: Path) -> None:
    run_dir = make_fake_run(tmp_path / "runs", "young", "crashed")
    app = FinetuneApp(runs_root=tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_tryit(pilot, run_dir)
        await until(pilot, lambda: "no adapter" in status_text(screen), "the message")
        assert screen.query_one("#status", Static).has_class("error")


async def test_predicts_on_one_thread_while_an_engine_trains(trained: Path) -> None:
    live = make_fake_run(trained.parent, "live", "running")  # this process plays the engine
    try:
        app = FinetuneApp(runs_root=trained.parent)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_tryit(pilot, trained)
            await until(pilot, lambda: "ready" in status_text(screen), "the model to load")
            assert "1 thread" in str(screen.query_one("#source", Static).render())
            assert screen.weights.threads_used == 1
    finally:
        import shutil

        shutil.rmtree(live)


async def test_export_dialog_copies_merges_and_reports_errors(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    app = FinetuneApp(runs_root=trained.parent)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_export(trained)
        await until(pilot, lambda: isinstance(app.screen, ExportScreen), "the export dialog")
        dialog: ExportScreen = app.screen  # type: ignore[assignment]
        await until(pilot, lambda: dialog.weights is not None, "the adapter to be found")
        # Suggested under the home folder, not wherever the app was started.
        suggested = f"~/finetune-exports/{trained.name}-adapter"
        assert dialog.query_one("#adapter-out", Input).value == suggested
        assert dialog.query_one("#merged-out", Input).value == suggested[:-7] + "merged"
        await pilot.click("#copy")
        await until(pilot, lambda: dialog.results, "the copy")
        first = tmp_path / "home" / "finetune-exports" / f"{trained.name}-adapter"
        assert (first / "adapter_config.json").is_file()
        assert not any(tmp_path.glob("*adapter*")), "nothing lands in the current folder"
        # A second export suggests a new folder; typing the old one asks before replacing it.
        await until(pilot, lambda: dialog.query_one("#adapter-out", Input).value != suggested, "")
        assert dialog.query_one("#adapter-out", Input).value == suggested + "-2"
        field = dialog.query_one("#adapter-out", Input)
        field.value = suggested
        await until(pilot, lambda: not dialog.query_one("#copy").disabled, "the buttons")
        field.focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, Confirm), "the overwrite question")
        await pilot.press("n")
        await until(pilot, lambda: app.screen is dialog, "the dialog again")
        assert dialog.query_one("#adapter-out", Input).value == suggested + "-2"
        assert len(dialog.results) == 1

        dialog.query_one("#adapter-out", Input).value = str(tmp_path / "a")
        await pilot.click("#copy")
        await until(pilot, lambda: len(dialog.results) == 2, "the copy")
        assert dialog.results[-1].startswith("adapter copied to")
        assert (tmp_path / "a" / "adapter_config.json").is_file()

        dialog.query_one("#merged-out", Input).value = str(tmp_path / "m")
        await until(pilot, lambda: not dialog.query_one("#merge").disabled, "the buttons")
        await pilot.click("#merge")
        await until(pilot, lambda: len(dialog.results) == 3, "the merge")
        assert dialog.results[-1].startswith("merged model written to")
        assert (tmp_path / "m" / "model.safetensors").is_file()

        taken = tmp_path / "file.txt"
        taken.write_text("x")
        field = dialog.query_one("#merged-out", Input)
        field.value = str(taken)
        field.focus()
        await pilot.press("enter")  # Enter in a field starts its export too
        await until(pilot, lambda: len(dialog.results) == 4, "the error")
        assert "is a file" in dialog.results[-1]
        assert dialog.query_one("#result", Static).has_class("error")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ExportScreen), "the dialog to close")
