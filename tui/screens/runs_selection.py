"""The run list's selected run: which row the cursor is on, its detail line and the notice line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.widgets import DataTable, Static

from engine.models.loading import model_label
from tui.format import STATE_STYLES, number, state_text
from tui.runs_model.run_rows import RunRow


class SelectedRunMixin:
    """The run under the cursor and the two lines under the table that talk about it."""

    rows: dict[str, RunRow]
    order: list[str]
    marked: list[str]
    root: Path
    app: Any
    size: Any
    query_one: Any
    scan: Any

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
