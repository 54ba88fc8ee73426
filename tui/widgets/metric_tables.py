"""Tables of the latest training figures and of the evaluation results."""

from __future__ import annotations

from typing import ClassVar

from textual.widgets import DataTable

from engine.rundir.events import Eval, Step
from tui.format import number

STEP_ROWS = 30
# Fixed widths: the table does not jump about as numbers grow, and snapshots stay stable.
STEP_COLUMNS = [
    ("step", 11),
    ("epoch", 5),
    ("loss", 6),
    ("lr", 8),
    ("grad norm", 9),
    ("samples/s", 9),
    ("tokens/s", 8),
]
EVAL_COLUMNS = [("epoch", 5), ("step", 6), ("accuracy", 8), ("F1", 6), ("eval loss", 9)]


def _count(n: int) -> str:
    """A step count in at most 5 characters: 22129 -> 22.1k, 100000 -> 100k, 2500000 -> 2.5M."""
    for scale, unit in ((1_000_000, "M"), (1_000, "k")):
        if n >= scale * 0.9995:  # 999,999 is 1.0M, not 1000k
            text = f"{n / scale:.1f}"
            return (text if len(text) <= 4 else f"{n / scale:.0f}") + unit
    return str(n)


def step_text(step: int, total: int, width: int = STEP_COLUMNS[0][1]) -> str:
    """'step/total', shortened with k and M when it would not fit the column (never cut)."""
    full = f"{step}/{total}" if total else str(step)
    if len(full) <= width:
        return full
    return f"{_count(step)}/{_count(total)}" if total else _count(step)


def epoch_text(epoch: float) -> str:
    """The epoch in the 5 characters of its column: 2 decimals, fewer as it grows."""
    return f"{epoch:.2f}" if epoch < 10 else f"{epoch:.1f}" if epoch < 100 else f"{epoch:.0f}"


class FiguresTable(DataTable):
    """A read-only striped table with fixed columns (COLUMNS: label and width)."""

    COLUMNS: ClassVar[list[tuple[str, int]]] = []

    def on_mount(self) -> None:
        """Set up the columns."""
        self.cursor_type = "none"
        self.zebra_stripes = True
        for label, width in self.COLUMNS:
            self.add_column(label, width=width)


class StepTable(FiguresTable):
    """The latest logged steps, newest first: step, epoch, loss, lr, grad norm, throughput."""

    COLUMNS = STEP_COLUMNS

    def show(self, steps: list[Step]) -> None:
        """Show the last rows of `steps` (called once per batch of events)."""
        self.clear()
        for s in reversed(steps[-STEP_ROWS:]):
            self.add_row(
                step_text(s.step, s.total_steps),
                epoch_text(s.epoch),
                number(s.loss, ".4f"),
                number(s.learning_rate, ".2e"),
                number(s.grad_norm, ".3f"),
                number(s.samples_per_s, ".1f"),
                number(s.tokens_per_s, ".0f"),
            )


class EvalTable(FiguresTable):
    """One row per evaluation, newest first: epoch, step, accuracy, F1, eval loss."""

    COLUMNS = EVAL_COLUMNS

    def show(self, evals: list[Eval]) -> None:
        """Show every evaluation so far (a language model's perplexity, or a preference run's
        reward margin, takes F1's place)."""
        ppl = any("perplexity" in e.metrics and "f1" not in e.metrics for e in evals)
        margin = not ppl and any("margin" in e.metrics for e in evals)
        third = "ppl" if ppl else "margin" if margin else "F1"
        if third != getattr(self, "_third", "F1"):
            self._third = third
            self.clear(columns=True)
            for label, width in EVAL_COLUMNS:
                self.add_column(third if label == "F1" else label, width=width)
        self.clear()
        for e in reversed(evals):
            m = e.metrics
            self.add_row(
                epoch_text(e.epoch),
                str(e.step) if len(str(e.step)) <= EVAL_COLUMNS[1][1] else _count(e.step),
                number(m.get("accuracy"), ".4f"),
                number(m.get("perplexity"), ".1f")
                if ppl
                else number(m.get("margin"), ".3f")
                if margin
                else number(m.get("f1"), ".4f"),
                number(m.get("loss"), ".4f"),
            )
