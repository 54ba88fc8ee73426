"""The run list: every run under the runs root, live or not, with the keys to act on one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import get_current_worker

from engine.core.errors import UserError
from engine.models.loading import model_label
from tui import keymap
from tui.format import STATE_STYLES, number, state_text
from tui.key_reasons import explain_turned_off_key
from tui.runs_model.columns import column_widths, row_cells
from tui.runs_model.run_rows import RunRow, RunScanner

SCAN_SECONDS = 2.0


class RunsScreen(Screen[None]):
    """Every run under the runs root; open, stop, resume, try, export, delete or compare them."""

    CSS_PATH = "runs.tcss"
    # Keys that do nothing for the selected row are hidden (not greyed), so that the footer
    # fits 80 columns with ^q Quit; the detail line says what enter and space do.
    BINDINGS = keymap.keys("runs")

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

    # -- the selected run, its detail line and the notice line ------------------------------------
    @property
    def selected(self) -> RunRow | None:
        """The run under the cursor, if any."""
        table = self.query_one(DataTable)
        if not table.row_count or not self.order:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:  # noqa: BLE001 - the table is being rebuilt
            return None
        return self.rows.get(str(key.value))

    def _show_detail(self) -> None:
        row = self.selected
        detail = self.query_one("#detail", Static)
        if row is None:
            detail.update("")
            return
        info = row.info
        where = f"  {model_label(info.model)} / {info.data}"
        if row.queued:
            text = Text.assemble(
                (row.entry.name if row.entry else info.run_id, "bold"),
                "  ",
                (f"queued #{row.place}", STATE_STYLES["queued"]),
                where,
                f"  {row.sweep_id}" if row.sweep_id else "",
            )
            hint = "starts when the run before it ends · enter edits · ⇧↑↓ moves · d cancels"
            second = Text(hint, style="dim")
            text.truncate(max(self.size.width - 2, 20), overflow="ellipsis")
            second.truncate(max(self.size.width - 2, 20), overflow="ellipsis")
            detail.update(Text("\n").join([text, second]))
            return
        text = Text.assemble(
            (info.run_id, "bold"),
            "  ",
            state_text(info.state),
            f"  step {info.step}/{info.total_steps or '?'}",
            f" (max_steps {row.config.training.max_steps})"
            if row.config is not None and row.config.training.max_steps
            else "",
            f"  best {info.metric_name} {number(info.best_metric)}" if info.best_metric else "",
            where,
            ("  marked" if row.run_id in self.marked else "", "bold"),
        )
        hint = {
            "running": "enter watches it live · s stops it (it saves first)",
            "starting": "starting up · enter watches it",
            "stopped": "enter opens · u resumes it from the last checkpoint",
            "crashed": "the engine died without saying why: u resumes it; engine.log may tell",
            "failed": "enter opens it",
        }.get(info.state, "enter opens · space marks it to compare")
        if row.sweep_id:
            hint += " · w shows its sweep"
        second = Text(info.message, style="red") if info.message else Text(hint, style="dim")
        text.truncate(max(self.size.width - 2, 20), overflow="ellipsis")  # one line each
        second.truncate(max(self.size.width - 2, 20), overflow="ellipsis")
        detail.update(Text("\n").join([text, second]))

    def notice(self, message: str, error: bool = False) -> None:
        """Show a one-line message under the table (red for errors)."""
        widget = self.query_one("#notice", Static)
        widget.update(Text(message))
        widget.set_class(error, "error")

    # -- keys that open another screen or mark runs (nothing on disk changes) ---------------------
    def action_open(self) -> None:
        """Open the monitor of the selected run (live if it still runs); edit a queued one."""
        if (row := self.selected) is None:
            return
        if row.entry is not None:
            self.app.open_setup(row.entry.config, queue_entry=row.entry.entry_id)  # type: ignore[attr-defined]
        else:
            self.app.open_monitor(row.info.path)  # type: ignore[attr-defined]

    def action_sweep(self) -> None:
        """Show the selected run's sweep: a sortable table of its runs and their curves."""
        row = self.selected
        if row is None or not row.sweep_id:
            return
        from tui.screens.compare import CompareScreen

        self.app.push_screen(CompareScreen([], sweep_id=row.sweep_id, root=self.root))

    def action_new(self) -> None:
        """Set up a new run."""
        self.app.open_setup()  # type: ignore[attr-defined]

    def action_tryit(self) -> None:
        """Try the selected run's model on your own text."""
        if (row := self.selected) is not None:
            self.app.open_tryit(row.info.path)  # type: ignore[attr-defined]

    def action_export(self) -> None:
        """Export the selected run's adapter or a merged model."""
        if (row := self.selected) is not None:
            self.app.open_export(row.info.path)  # type: ignore[attr-defined]

    def action_mark(self) -> None:
        """Mark or unmark the selected run for comparison."""
        row = self.selected
        if row is None:
            return
        if row.run_id in self.marked:
            self.marked.remove(row.run_id)
        else:
            self.marked.append(row.run_id)
        self._fill()
        self._show_detail()
        self.refresh_bindings()
        if len(self.marked) == 1:
            self.notice("marked 1 run: mark another (space) to compare (c)")
        elif self.marked:
            self.notice(f"marked {len(self.marked)} runs: c compares their loss curves")

    def action_compare(self) -> None:
        """Compare the marked runs: curves, differing settings and final metrics."""
        from tui.screens.compare import CompareScreen

        paths = [self.rows[m].info.path for m in self.marked if m in self.rows]
        if len(paths) >= 2:
            self.app.push_screen(CompareScreen(paths))

    # -- keys that change runs or the queue (disk and engine work in thread workers) --------------
    def action_stop(self) -> None:
        """Ask the selected run's engine to stop gracefully."""
        if (row := self.selected) is not None:
            self._stop(row.info.path)

    def action_resume(self) -> None:
        """Continue the selected run from its last checkpoint in a new engine."""
        if (row := self.selected) is not None:
            self._resume(row.info.path)

    def action_start_queue(self) -> None:
        """Start the first queued run now (nothing is training)."""
        self._start_queue()

    def action_move(self, delta: int) -> None:
        """Move the selected queued run earlier or later in the queue."""
        row = self.selected
        if row is None or row.entry is None:
            return
        from engine.runs import queue

        try:
            queue.move(self.root, row.entry.entry_id, delta)
        except UserError as exc:
            self.notice(exc.one_line(), error=True)
        self.scan()

    def action_delete(self) -> None:
        """Delete the selected run after a confirmation (a live run is refused)."""
        from tui.widgets.dialogs import Confirm

        row = self.selected
        if row is None:
            return
        if row.entry is not None:
            from engine.runs import queue

            try:
                queue.remove(self.root, row.entry.entry_id)
            except UserError as exc:
                self.notice(f"not cancelled: {exc.one_line()}", error=True)
            else:
                self.notice(f"cancelled the queued run {row.entry.name}")
            self.scan()
            return
        if row.info.active:
            self.notice(f"{row.run_id} is still running: stop it (s) before deleting", error=True)
            return
        path = row.info.path

        def answered(yes: bool | None) -> None:
            if yes:
                self._delete(path)

        self.app.push_screen(
            Confirm(
                f"Delete run {row.run_id}?\nIts folder {path}, checkpoints and adapter "
                "included, is removed for good.",
                yes="Delete",
            ),
            answered,
        )

    # -- engine talk in workers ---------------------------------------------------------------------
    @work(thread=True, group="control", exit_on_error=False)
    def _stop(self, run_dir: Path) -> None:
        from engine.runs.launch import request_stop

        ok = request_stop(run_dir)
        message = (
            f"asked {run_dir.name} to stop: it finishes the step and saves first"
            if ok
            else f"{run_dir.name} is not running"
        )
        self.app.call_from_thread(self.notice, message, not ok)
        self.app.call_from_thread(self.scan)

    @work(thread=True, group="control", exit_on_error=False)
    def _resume(self, run_dir: Path) -> None:
        from engine.runs.launch import resume

        try:
            pid = resume(run_dir)
        except (UserError, OSError) as exc:
            message = exc.one_line() if isinstance(exc, UserError) else str(exc)
            self.app.call_from_thread(self.notice, f"cannot resume: {message}", True)
        else:
            self.app.call_from_thread(
                self.notice, f"resumed {run_dir.name} (engine pid {pid}); enter opens it"
            )
        self.app.call_from_thread(self.scan)

    @work(thread=True, group="control", exit_on_error=False)
    def _start_queue(self) -> None:
        from engine.runs.queue import busy_run, start_next

        try:
            started_dir = start_next(self.root)
        except OSError as exc:
            self.app.call_from_thread(self.notice, f"cannot start: {exc}", True)
            return
        if started_dir is not None:
            self.app.call_from_thread(self.notice, f"started {started_dir.name}; enter opens it")
        else:
            busy = busy_run(self.root)
            why = f"{busy.name} is training" if busy else "the queue is empty"
            self.app.call_from_thread(self.notice, f"nothing started: {why}", True)
        self.app.call_from_thread(self.scan)

    @work(thread=True, group="control", exit_on_error=False)
    def _delete(self, run_dir: Path) -> None:
        from engine.rundir.runs import delete_run

        try:
            delete_run(run_dir)
        except (UserError, OSError) as exc:
            message = exc.one_line() if isinstance(exc, UserError) else str(exc)
            self.app.call_from_thread(self.notice, f"not deleted: {message}", True)
        else:
            self.app.call_from_thread(self.notice, f"deleted {run_dir.name}")
        self.app.call_from_thread(self.scan)

    # -- which keys do something for the selected run, and why the others do not -----------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Grey out the keys that do nothing for the selected run."""
        row = self.selected
        state = row.info.state if row else ""
        run = row is not None and not row.queued
        queued = row is not None and row.queued
        enabled = {
            "open": row is not None,
            "mark": run,
            "compare": len(self.marked) >= 2,
            "sweep": row is not None and bool(row.sweep_id),
            "tryit": run and row.has_weights,  # type: ignore[union-attr]
            "export": run and row.has_weights,  # type: ignore[union-attr]
            "stop": state in ("starting", "running"),
            "resume": state in ("stopped", "failed", "crashed"),
            "start_queue": any(r.queued for r in self.rows.values())
            and not any(r.info.active for r in self.rows.values()),
            "move": queued,
            # A live run keeps `d` so that pressing it explains why it is not deleted.
            "delete": row is not None,
        }.get(action, True)
        return bool(enabled)

    def explain(self, reason: str, title: str) -> None:
        """Say why a key did nothing on the notice line under the table."""
        self.notice(reason)

    def on_key(self, event: events.Key) -> None:
        """A key whose action is turned off, pressed, says why."""
        explain_turned_off_key(self, event, self.why_not, self.explain)

    def why_not(self, action: str) -> str:
        """Why a key does nothing for the selected row (one line under the table at 80 columns)."""
        row = self.selected
        if row is None:
            return "No run selected: n sets up a new run." if action != "start_queue" else ""
        state = row.info.state or "queued"
        if action == "compare":
            if len(self.marked) == 1:
                return "Mark one more run (space) to compare: 1 is marked."
            return "Mark two runs or more with space first, then c compares them."
        if action == "sweep":
            return "This run is not part of a sweep (several values in one field queue one)."
        if action == "start_queue":
            if not any(r.queued for r in self.rows.values()):
                return "The queue is empty: the form's Add to queue (ctrl+g) queues a run."
            return "A run is training: the queue goes on by itself when it ends."
        if action in ("tryit", "export"):
            if row.queued:
                return "This run is queued: it has no model until it has trained."
            return "This run has no adapter yet: it is saved when the run ends or stops."
        if action == "stop":
            return f"Nothing to stop: this run is {state}."
        if action == "resume":
            if row.info.active:
                return "This run is training already."
            if state == "finished":
                return "This run has finished: nothing to resume (enter, then n, tweaks it)."
            return f"Nothing to resume: this run is {state}."
        if action == "mark":
            return "A queued run has no curves to compare yet."
        if action == "move":
            return "Only queued runs move (shift+up / shift+down)."
        return ""
