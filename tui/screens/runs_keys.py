"""The run list's keys: which do something for the selected run, and why the others do not."""

from __future__ import annotations

from tui.key_reasons import ExplainsKeys
from tui.screens.runs_selection import SelectedRunMixin


class RunKeysMixin(ExplainsKeys, SelectedRunMixin):
    """Hides the keys that do nothing for the selected run; pressed anyway, they say why."""

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
