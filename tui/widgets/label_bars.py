"""A small horizontal bar chart of examples per label."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

MAX_LABELS = 8


def label_bars(counts: dict[str, int], width: int = 30) -> Content:
    """One line per label: name, a bar scaled to the largest class, and the count."""
    if not counts:
        return Content("")
    shown = sorted(counts.items(), key=lambda kv: -kv[1])[:MAX_LABELS]
    top = max(c for _, c in shown) or 1
    name_w = min(16, max(len(name) for name, _ in shown))
    total = sum(counts.values()) or 1
    parts: list[str | tuple[str, str]] = []
    for i, (name, count) in enumerate(shown):
        if i:
            parts.append("\n")
        cells = max(1, round(width * count / top)) if count else 0
        parts += [
            (f"{name[:name_w]:<{name_w}} ", "bold"),
            ("█" * cells, "$accent"),
            (f" {count} ({100 * count / total:.0f}%)", "dim"),
        ]
    if len(counts) > MAX_LABELS:
        parts.append((f"\n… and {len(counts) - MAX_LABELS} more labels", "dim"))
    return Content.assemble(*parts)


class LabelBars(Static):
    """Training examples per label as bars."""

    def show_counts(self, counts: dict[str, int]) -> None:
        """Draw the counts (an empty dict clears the chart)."""
        self.update(label_bars(counts))
