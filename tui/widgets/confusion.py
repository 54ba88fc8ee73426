"""Evaluation detail: the confusion matrix and per-class precision / recall / F1 of an `eval` event."""

from __future__ import annotations

from typing import Any

from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from tui.format import clip


def confusion_table(metrics: dict[str, Any]) -> Table | None:
    """Rows are true labels, columns predictions; the diagonal (correct) is highlighted."""
    matrix = metrics.get("confusion")
    labels = [str(x) for x in metrics.get("labels") or []]
    if not matrix or not labels or len(matrix) != len(labels):
        return None
    many = len(labels) > 6
    table = Table(box=None, padding=(0, 1), pad_edge=False, expand=False)
    table.add_column("true \\ pred", style="bold", no_wrap=True)
    for i, label in enumerate(labels):
        table.add_column(str(i) if many else clip(label, 8), justify="right", no_wrap=True)
    peak = max((max(row) for row in matrix if row), default=0) or 1
    for i, (label, row) in enumerate(zip(labels, matrix, strict=True)):
        cells = []
        for j, count in enumerate(row):
            if i == j:
                style = "bold green"
            elif count:
                style = "red" if count / peak > 0.2 else "yellow"
            else:
                style = "dim"
            cells.append(Text(str(count), style=style))
        name = f"{i} {clip(label)}" if many else clip(label)
        table.add_row(name, *cells)
    return table


def per_class_table(metrics: dict[str, Any]) -> Table | None:
    """Precision, recall, F1 and support for each label."""
    per_class = metrics.get("per_class")
    if not isinstance(per_class, dict) or not per_class:
        return None
    table = Table(box=None, padding=(0, 1), pad_edge=False, expand=False, header_style="bold")
    for name, justify in (
        ("label", "left"),
        ("precision", "right"),
        ("recall", "right"),
        ("f1", "right"),
        ("support", "right"),
    ):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for label, scores in per_class.items():
        f1 = float(scores.get("f1", 0.0))
        style = "green" if f1 >= 0.8 else "yellow" if f1 >= 0.5 else "red"
        table.add_row(
            clip(str(label)),
            f"{float(scores.get('precision', 0.0)):.3f}",
            f"{float(scores.get('recall', 0.0)):.3f}",
            Text(f"{f1:.3f}", style=style),
            str(int(scores.get("support", 0))),
        )
    return table


def summary_line(metrics: dict[str, Any], step: int | None = None) -> Text:
    """One line: accuracy, macro-F1 and eval loss (whichever are present)."""
    parts = [f"step {step}"] if step is not None else []
    for key, name in (("accuracy", "accuracy"), ("f1", "macro-F1"), ("loss", "loss")):
        value = metrics.get(key)
        if isinstance(value, (int, float)):
            parts.append(f"{name} {value:.4f}")
    return Text("  ".join(parts), style="bold")


def metrics_renderable(metrics: dict[str, Any], step: int | None = None) -> RenderableType:
    """Summary line, then the per-class table and the confusion matrix (side by side if room)."""
    blocks: list[RenderableType] = []
    per_class = per_class_table(metrics)
    if per_class is not None:
        blocks.append(per_class)
    confusion = confusion_table(metrics)
    if confusion is not None:
        legend = Text("confusion (rows true, cols predicted)", style="dim")
        blocks.append(Group(legend, confusion))
    return Group(summary_line(metrics, step), Columns(blocks, padding=(1, 4)))


class ConfusionView(Static):
    """Renders the latest confusion matrix and per-class table; set `metrics` (an Eval's metrics)."""

    DEFAULT_CSS = """
    ConfusionView {
        height: auto;
        padding: 0 1;
    }
    """

    metrics: reactive[dict[str, Any]] = reactive(dict, always_update=True)
    step: reactive[int | None] = reactive(None)

    def show_eval(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Show an evaluation's metrics (e.g. `Eval.metrics`, `Eval.step`)."""
        self.step = step
        self.metrics = dict(metrics)

    def watch_metrics(self) -> None:
        """Re-render when new metrics arrive."""
        self.update(self.build())

    def build(self) -> RenderableType:
        """The renderable for the current metrics."""
        if not self.metrics:
            return Text("no evaluation yet", style="dim")
        return metrics_renderable(self.metrics, self.step)
