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
        self._stale = False  # lines arrived while hidden: drawn when shown

    def add(self, text: str, level: str = "info") -> None:
        """Append one line (kept for later while the pane is hidden: a hidden log has no width
        and would wrap it at `min_width`)."""
        line = Text(text, style=STYLES.get(level, ""))
        self.entries.append(line)
        if self.display and self.size.width:
            self.write(line)
        else:
            self._stale = True

    def on_resize(self, event: events.Resize) -> None:
        """Re-wrap every line for the new width (layouts change with the terminal size)."""
        if event.size.width != self._width or self._stale:
            self._rewrap(event.size.width)

    def on_show(self) -> None:
        """Shown again (v, m or g toggled back): draw what arrived while hidden."""
        if self._stale and self.size.width:
            self._rewrap(self.size.width)

    def _rewrap(self, width: int) -> None:
        self._width = width
        self._stale = False
        self.clear()
        for line in self.entries:
            self.write(line)

    @property
    def plain(self) -> str:
        """All lines as plain text (for tests and copying)."""
        return "\n".join(line.plain for line in self.entries)
