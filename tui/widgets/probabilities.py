"""A predicted label with its class probabilities drawn as bars."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from tui.format import clip

BAR_WIDTH = 24
MAX_CLASSES = 8
EIGHTHS = " ▏▎▍▌▋▊▉█"


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar `fraction` (0..1) of `width` cells, with eighth-cell resolution."""
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, rest = divmod(eighths, 8)
    return ("█" * full + (EIGHTHS[rest] if rest else "")).ljust(width)


def probability_table(probabilities: dict[str, float], best: str) -> Table:
    """Classes sorted by probability (top `MAX_CLASSES`), each with a bar and a percentage."""
    table = Table(box=None, show_header=False, padding=(0, 1), pad_edge=False)
    table.add_column("label", no_wrap=True)
    table.add_column("bar", no_wrap=True)
    table.add_column("p", justify="right", no_wrap=True)
    ranked = sorted(probabilities.items(), key=lambda kv: kv[1], reverse=True)
    for label, p in ranked[:MAX_CLASSES]:
        style = "bold green" if label == best else ""
        table.add_row(
            Text(clip(label, 16), style=style),
            Text(bar(p), style=style or "blue"),
            Text(f"{p * 100:5.1f}%", style=style),
        )
    if len(ranked) > MAX_CLASSES:
        table.add_row(Text(f"+{len(ranked) - MAX_CLASSES} more", style="dim"), "", "")
    return table


class PredictionView(Static):
    """One text's prediction: the text, the predicted label, and a bar per class."""

    DEFAULT_CSS = """
    PredictionView {
        height: auto;
        margin-bottom: 1;
    }
    """

    def __init__(self, text: str, label: str, probabilities: dict[str, float]) -> None:
        super().__init__()
        self.source_text = text
        self.label = label
        self.probabilities = probabilities

    def on_mount(self) -> None:
        """Render once: a prediction does not change."""
        self.update(self.build())

    def build(self) -> RenderableType:
        """The renderable: header line then the probability bars."""
        header = Text.assemble(
            ("→ ", "dim"),
            (self.label, "bold green"),
            ("  ", ""),
            (clip(self.source_text, 200), "italic"),
        )
        header.no_wrap = True
        header.overflow = "ellipsis"
        return Group(header, probability_table(self.probabilities, self.label))
