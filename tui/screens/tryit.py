"""Try a run's model on your own text: one prediction per line, with class probabilities."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Static, TextArea

from engine.core.errors import UserError
from engine.tasks.classification.predict import Prediction
from tui.widgets.probabilities import PredictionView

MAX_LINES = 100
_default_threads: int | None = None


def training_engine_alive(root: Path) -> bool:
    """True when any run under `root` has a live engine (reads the disk: call in a worker)."""
    from engine.rundir.runs import STATUS_FILE, engine_alive

    if not root.is_dir():
        return False
    return any(engine_alive(p) for p in root.iterdir() if (p / STATUS_FILE).is_file())


def set_threads(busy: bool) -> int:
    """Cap torch to 1 thread while an engine trains (no oversubscription), else the default.

    Torch's intra-op thread count is per calling thread: call this in the thread that predicts.
    """
    global _default_threads
    import torch

    if _default_threads is None:
        _default_threads = torch.get_num_threads()
    wanted = 1 if busy else _default_threads
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    return wanted


def describe(weights: Path, run_dir: Path) -> str:
    """Where the weights come from, in words."""
    if weights.parent.name == "checkpoints":
        return f"newest checkpoint ({weights.name}) of a run still training"
    return f"final adapter in {weights}" if weights.parent != run_dir else "final adapter"


class TryItScreen(Screen[None]):
    """Type texts (one per line) and see the predicted label and class probabilities."""

    CSS_PATH = "tryit.tcss"
    BINDINGS = [
        Binding("ctrl+r", "predict", "Predict", priority=True),
        Binding("ctrl+l", "clear", "Clear"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.predictions: list[Prediction] = []
        self._predictor: Any = None
        self._loaded: tuple[Path, float, int] | None = None
        self._lock = threading.Lock()
        self.threads_used = 0

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
    def _load(self) -> tuple[Any, Path, int]:
        """The predictor for the newest weights (reloaded when they change), and the thread cap."""
        from engine.rundir.weights import find_weights
        from engine.tasks.classification.predict import Predictor

        weights = find_weights(self.run_dir)
        busy = training_engine_alive(self.run_dir.parent)
        threads = set_threads(busy)  # per thread: each worker thread sets its own
        self.threads_used = threads
        stamp = max((p.stat().st_mtime for p in weights.iterdir()), default=0.0)
        key = (weights, stamp, threads)
        if self._predictor is None or self._loaded != key:
            self._predictor = Predictor(weights, threads=threads)
            self._loaded = key
        return self._predictor, weights, threads

    @work(thread=True, group="predict", exit_on_error=False)
    def run_predict(self, texts: list[str]) -> None:
        """Load (if needed) and predict in a thread; post the result to the UI thread."""
        call = self.app.call_from_thread
        try:
            with self._lock:
                predictor, weights, threads = self._load()
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
