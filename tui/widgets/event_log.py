"""The engine's log pane: keeps its lines so that a new width re-wraps them instead of cutting."""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual import events
from textual.widgets import RichLog

MAX_LINES = 2000
STYLES = {"warning": "yellow", "error": "bold red"}


class EventLog(RichLog):
    """A RichLog of phases, warnings and errors; lines are styled by level."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(
            id=id, wrap=True, markup=False, highlight=False, max_lines=MAX_LINES, min_width=20
        )
        self.entries: deque[Text] = deque(maxlen=MAX_LINES)
        self._width = 0

    def add(self, text: str, level: str = "info") -> None:
        """Append one line."""
        line = Text(text, style=STYLES.get(level, ""))
        self.entries.append(line)
        self.write(line)

    def on_resize(self, event: events.Resize) -> None:
        """Re-wrap every line for the new width (layouts change with the terminal size)."""
        if event.size.width != self._width:
            self._width = event.size.width
            self.clear()
            for line in self.entries:
                self.write(line)

    @property
    def plain(self) -> str:
        """All lines as plain text (for tests and copying)."""
        return "\n".join(line.plain for line in self.entries)
