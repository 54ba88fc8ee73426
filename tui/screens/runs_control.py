"""The run list's keys that change runs or the queue: stop, resume, start, move, delete.

The disk and engine work happens in thread workers; what came of it shows on the notice line.
"""

from __future__ import annotations

from pathlib import Path

from textual import work

from engine.core.errors import UserError
from tui.screens.runs_selection import SelectedRunMixin


class RunControlMixin(SelectedRunMixin):
    """Stop, resume or delete the selected run; start the queue or move a queued run in it."""

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
