"""One tab of the setup form: its main fields, then the rest in a "More … settings" box."""

from __future__ import annotations

from collections.abc import Iterable

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widget import Widget
from textual.widgets import Button, Collapsible

from tui.widgets.form_field import FormField

PATH_FIELDS = ("data_file_path", "eval_file_path")  # a Browse… button beside them


class SettingsTab(VerticalScroll):
    """The fields of one tab, in order; the screen owns the fields (its form reads them).

    `after` puts widgets right below a field (the model's summary and the task after the model,
    the target modules after the dropout); `below` goes under everything (the data preview).
    The scroll area takes no focus of its own: tab from the tab bar goes straight to the first
    field (a focused VerticalScroll shows nothing and swallows typing), and shift+tab from the
    first field goes straight back to the tab bar; focusing a field still scrolls it into view.
    """

    def __init__(
        self,
        title: str,
        main: list[FormField],
        more: list[FormField],
        *,
        after: dict[str, list[Widget]] | None = None,
        below: Iterable[Widget] = (),
        more_open: bool = False,
    ) -> None:
        super().__init__(classes="form", can_focus=False)
        self.title = title
        self.main, self.more = main, more
        self.after = after or {}
        self.below = list(below)
        self.more_open = more_open

    def compose(self) -> ComposeResult:
        """The main fields, the others folded away, then what goes below."""
        for field in self.main:
            yield from self._field(field)
            yield from self.after.get(field.field_name, [])
        more = Collapsible(
            title=f"More {self.title} settings", classes="more", collapsed=not self.more_open
        )
        with more:
            for field in self.more:
                yield from self._field(field)
        yield from self.below

    def _field(self, field: FormField) -> ComposeResult:
        if field.field_name in PATH_FIELDS:
            with Horizontal(classes="path-row"):
                yield field
                yield Button(
                    "Browse…", id=f"browse-{field.field_name}", classes="browse", compact=True
                )
        else:
            yield field
