"""The run list: every run under the runs root, live or not, with the keys to act on one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import get_current_worker

from tui.runs_model.columns import column_widths, row_cells
from tui.runs_model.run_rows import RunRow, RunScanner
from tui.screens.runs_actions import RunActionsMixin
from tui.screens.runs_control import RunControlMixin
from tui.screens.runs_keys import RunKeysMixin

SCAN_SECONDS = 2.0


class RunsScreen(RunKeysMixin, RunActionsMixin, RunControlMixin, Screen[None]):
    """Every run under the runs root; open, stop, resume, try, export, delete or compare them."""

    CSS_PATH = "runs.tcss"
    # Keys that do nothing for the selected row are hidden (not greyed), so that the footer
    # fits 80 columns with ^q Quit; the detail line says what enter and space do.
    BINDINGS = [
        Binding("enter", "open", "Open", show=False),
        Binding("n", "new", "New"),
        Binding("space", "mark", "Mark", key_display="spc"),
        Binding("c", "compare", "Compare"),
        Binding("w", "sweep", "Sweep"),
        Binding("t", "tryit", "Try"),
        Binding("e", "export", "Export"),
        Binding("s", "stop", "Stop"),
        Binding("u", "resume", "Resume"),
        Binding("g", "start_queue", "Go"),
        Binding("shift+up", "move(-1)", "Move", key_display="⇧↑↓"),
        Binding("shift+down", "move(1)", "Move", show=False),
        Binding("d", "delete", "Delete"),
        Binding("r", "rescan", "Refresh", show=False),
    ]

    def __init__(self, runs_root: Path | None = None) -> None:
        super().__init__()
        self._root = runs_root
        self.rows: dict[str, RunRow] = {}
        self.order: list[str] = []
        self.marked: list[str] = []
        self._cells: dict[str, list[Any]] = {}
        self._widths: dict[str, int] = {}
        self._timer: Timer | None = None
        self._scanner: RunScanner | None = None
        self._scanning = False

    @property
    def root(self) -> Path:
        """The runs root (the app's unless one was given)."""
        return self._root or Path(getattr(self.app, "runs_root"))  # noqa: B009

    # -- layout ---------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        """Header, the run table, a detail line, an inline notice, and the keys."""
        yield Header()
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Static(id="empty")
        yield Static(id="detail")
        yield Static(id="notice")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        """Build the columns and start the periodic scan (paused while another screen is on top)."""
        self.sub_title = "runs"
        self._scanner = RunScanner(self.root)
        self._build_columns(self.size.width or 80)
        empty = self.query_one("#empty", Static)
        empty.update(Text(f"No runs yet under {self.root}.\nPress n to start one.", style="dim"))
        empty.display = False
        self._timer = self.set_interval(SCAN_SECONDS, self.scan)
        self.scan()

    def on_screen_suspend(self) -> None:
        """Stop scanning while another screen covers this one."""
        if self._timer is not None:
            self._timer.pause()

    def on_screen_resume(self) -> None:
        """Scan at once when shown again, then every few seconds."""
        if self._timer is not None:
            self._timer.resume()
            self.scan()

    def on_resize(self) -> None:
        """Re-fit the columns when the terminal size changes."""
        if self._scanner is None:
            return
        widths = column_widths(self.size.width)
        if widths != self._widths:
            self._build_columns(self.size.width)
            self._fill(force=True)

    def _build_columns(self, width: int) -> None:
        table = self.query_one(DataTable)
        self._widths = column_widths(width)
        table.clear(columns=True)
        for name, width in self._widths.items():
            label = "start" if name == "started" and width < 7 else name
            table.add_column(label, key=name, width=width)
        self._cells.clear()

    # -- scanning (disk work happens in a thread worker) -----------------------------------------
    def scan(self) -> None:
        """Start a scan unless one is still going (a slow disk must not starve the list)."""
        if not self._scanning:
            self._scanning = True
            self._scan()

    @work(thread=True, group="scan", exit_on_error=False)
    def _scan(self) -> None:
        """Re-read the runs root in a thread and post the rows to the UI thread."""
        assert self._scanner is not None
        try:
            rows = self._scanner.scan()
        finally:
            self._scanning = False
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self.show_rows, rows)

    def action_rescan(self) -> None:
        """Refresh now."""
        self.scan()

    def show_rows(self, rows: list[RunRow]) -> None:
        """Put freshly scanned rows in the table, keeping the cursor on the same run."""
        self.rows = {r.run_id: r for r in rows}
        self.marked = [m for m in self.marked if m in self.rows]
        self._fill(force=[r.run_id for r in rows] != self.order)
        self.query_one("#empty", Static).display = not rows
        self.query_one(DataTable).display = bool(rows)
        self._show_detail()
        self.refresh_bindings()

    def _fill(self, force: bool = False) -> None:
        table = self.query_one(DataTable)
        ids = [r.run_id for r in self.rows.values()]
        if force:
            current = self.selected.run_id if self.selected else None
            old_index = table.cursor_row
            table.clear()
            self._cells.clear()
            for run_id in ids:
                cells = row_cells(self.rows[run_id], self._widths, self.marked)
                table.add_row(*cells, key=run_id)
                self._cells[run_id] = cells
            self.order = ids
            if ids:
                index = ids.index(current) if current in ids else min(old_index, len(ids) - 1)
                if current is None:  # first fill: the newest run, not the queue above it
                    index = next((i for i, r in enumerate(ids) if not self.rows[r].queued), 0)
                table.move_cursor(row=max(index, 0))
            return
        for run_id in ids:
            cells = row_cells(self.rows[run_id], self._widths, self.marked)
            for name, old, new in zip(
                self._widths, self._cells.get(run_id, []), cells, strict=False
            ):
                if old != new:
                    table.update_cell(run_id, name, new)
            self._cells[run_id] = cells

    # -- the selected row (the handlers stay here: @on only registers on a Screen's own class) ----
    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self._show_detail()
        self.refresh_bindings()

    @on(DataTable.RowSelected)
    def _selected(self) -> None:
        self.action_open()
