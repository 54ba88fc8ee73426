"""Try a run's model on your own text: one prediction per line, with class probabilities."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Static, TextArea

from engine.core.errors import UserError
from engine.tasks.classification.predict import Prediction
from tui import keymap
from tui.run_weights import NewestWeights, describe
from tui.widgets.probabilities import PredictionView

MAX_LINES = 100


def _predictor(weights: Path, threads: int) -> Any:
    from engine.tasks.classification.predict import Predictor

    return Predictor(weights, threads=threads)


class TryItScreen(Screen[None]):
    """Type texts (one per line) and see the predicted label and class probabilities."""

    CSS_PATH = "tryit.tcss"
    BINDINGS = keymap.keys("try_it")

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.predictions: list[Prediction] = []
        self.weights: NewestWeights[Any] = NewestWeights(self.run_dir, _predictor)

    def compose(self) -> ComposeResult:
        """Where the weights are, the text box, the predict button and the results."""
        yield Header()
        yield Static("looking for the adapter…", id="source")
        yield TextArea(
            id="texts",
            placeholder="Type a text; one prediction per line.",
            show_line_numbers=False,
            soft_wrap=True,
        )
        with Horizontal(id="actions"):
            yield Button("Predict (ctrl+r)", id="predict", variant="primary", compact=True)
            yield Static(id="status")
        yield VerticalScroll(id="results")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        """Load the model in the background so the first prediction is quick."""
        self.sub_title = f"try {self.run_dir.name}"
        self.query_one("#texts", TextArea).focus()
        self.run_predict([])

    # -- actions ----------------------------------------------------------------------------------
    @on(Button.Pressed, "#predict")
    def action_predict(self) -> None:
        """Predict every non-empty line of the text box."""
        lines = [ln.strip() for ln in self.query_one("#texts", TextArea).text.splitlines()]
        texts = [ln for ln in lines if ln]
        if not texts:
            self.set_status("type a text first (one per line)", "warning")
            return
        if len(texts) > MAX_LINES:
            texts = texts[:MAX_LINES]
            self.notify(f"predicting the first {MAX_LINES} lines only")
        self.set_status("predicting…", "busy")
        self.run_predict(texts)

    def action_clear(self) -> None:
        """Empty the text box and the results."""
        self.query_one("#texts", TextArea).text = ""
        self.query_one("#results").remove_children()
        self.predictions = []
        self.set_status("")

    def action_back(self) -> None:
        """Back to the previous screen."""
        self.app.pop_screen()

    def set_status(self, message: str, kind: str = "") -> None:
        """Show a one-line status next to the button (`error`, `warning`, `busy` or plain)."""
        status = self.query_one("#status", Static)
        status.update(Text(message))
        for name in ("error", "warning", "busy"):
            status.set_class(kind == name, name)

    # -- loading and predicting happen in a thread ------------------------------------------------
    @work(thread=True, group="predict", exit_on_error=False)
    def run_predict(self, texts: list[str]) -> None:
        """Load (if needed) and predict in a thread; post the result to the UI thread."""
        call = self.app.call_from_thread
        try:
            with self.weights.lock:
                predictor, weights, threads = self.weights.get()
                source = describe(weights, self.run_dir)
                call(self._show_source, source, threads)
                predictions = predictor.predict(texts) if texts else []
        except UserError as exc:
            call(self._show_source, "", 0)
            call(self.set_status, exc.one_line(), "error")
            return
        except Exception as exc:  # noqa: BLE001 - a broken folder must not kill the app
            call(self.set_status, f"cannot load the model: {type(exc).__name__}: {exc}", "error")
            return
        if texts:
            call(self.show_predictions, predictions)
        else:
            call(self.set_status, "ready: type a text and press ctrl+r")

    def _show_source(self, source: str, threads: int) -> None:
        line = Text.assemble(("weights: ", "dim"), source or "none yet")
        if threads == 1:
            line.append("  (training: 1 thread)", style="yellow")
        self.query_one("#source", Static).update(line)

    def show_predictions(self, predictions: list[Prediction]) -> None:
        """Replace the results with one block per prediction."""
        self.predictions = predictions
        results = self.query_one("#results", VerticalScroll)
        results.remove_children()
        results.mount_all(PredictionView(p.text, p.label, p.probabilities) for p in predictions)
        shown = ", ".join(p.label for p in predictions[:3]) + ("…" if len(predictions) > 3 else "")
        self.set_status(f"{len(predictions)} prediction{'s' * (len(predictions) != 1)}: {shown}")
