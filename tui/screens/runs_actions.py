"""The run list's keys that open another screen on runs, or mark runs to compare."""

from __future__ import annotations

from typing import Any

from tui.screens.runs_selection import SelectedRunMixin


class RunActionsMixin(SelectedRunMixin):
    """Open, new, try, export, sweep, mark and compare: nothing on disk changes."""

    _fill: Any
    refresh_bindings: Any

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
