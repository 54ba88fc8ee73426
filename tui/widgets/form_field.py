"""One setting of the run config in the form: label, editor, help text and its message."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.suggester import Suggester
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static, Switch

from engine.config import RunConfig
from tui.forms.field_text import (  # noqa: F401 - the screens' names for them
    FIELDS,
    LABELS,
    SECTION_OF,
    field_label,
    form_words,
    format_value,
)
from tui.validators import ConfigFieldValidator

_NOTHING = object()


class FormField(Vertical):
    """A config field: `[label] [Input | Select | Switch] [help]`, and the message below it."""

    @dataclass
    class Changed(Message):
        """The user changed this field's value."""

        field: FormField

    def __init__(
        self,
        name: str,
        current: Callable[[], RunConfig],
        *,
        editor: Widget | None = None,
        help: str | None = None,
        placeholder: str = "",
        suggester: Suggester | None = None,
        options: list[tuple[str, Any]] | None = None,
    ) -> None:
        fdef = FIELDS[name]
        super().__init__(id=f"field-{name}", classes="form-field")
        self.field_name = name
        self.path = f"{SECTION_OF[name]}.{name}"
        self.current = current
        self.help_text = fdef.metadata["help"] if help is None else help
        self.problem: str | None = None
        self.external: str | None = None
        self._external_until_changed = False
        self._ready = False  # composed (a deferred tab mounts it after the first frame)
        self._pending: Any = _NOTHING  # a value set before then
        self._shown: str | None = None
        kind = fdef.type if isinstance(fdef.type, str) else fdef.type.__name__
        default = fdef.default
        if editor is not None:
            self.editor = editor
        elif kind == "bool":
            self.editor = Switch(value=bool(default), id=f"in-{name}")
            self.editor.compact = True
        elif options is not None or fdef.metadata.get("choices"):
            opts = options or [(c, c) for c in fdef.metadata["choices"]]
            self.editor = Select(
                opts, value=default, allow_blank=False, compact=True, id=f"in-{name}"
            )
        else:
            self.editor = Input(
                format_value(default),
                placeholder=placeholder,
                compact=True,
                id=f"in-{name}",
                validators=[ConfigFieldValidator(name, self.current)],
                suggester=suggester,
                valid_empty=False,
            )
        self.editor.tooltip = self.help_text

    def compose(self) -> ComposeResult:
        """Label, editor and help on one row; the message on the next."""
        with Horizontal(classes="field-row"):
            yield Label(field_label(self.field_name), classes="field-label")
            yield self.editor
            if isinstance(self.editor, Switch):  # a switch alone does not say on or off
                yield Static(self._switch_text(), classes="switch-state", markup=False)
            yield Static(self.help_text, classes="field-help", markup=False)
        yield Static("", classes="field-error", markup=False)

    def _switch_text(self) -> str:
        return "on" if self.editor.value else "off"

    # -- value -------------------------------------------------------------------------------
    @property
    def value(self) -> Any:
        """The editor's value (text for an Input, the option for a Select, bool for a Switch)."""
        if self._pending is not _NOTHING:
            return self._pending
        return self.editor.value

    def set_value(self, value: Any) -> None:
        """Show a config value in the editor (kept until mounted for a Select or a Switch: their
        watchers need their parts, which a deferred tab composes later)."""
        if not self._ready and not isinstance(self.editor, Input):
            self._pending = bool(value) if isinstance(self.editor, Switch) else value
            return
        if isinstance(self.editor, Input):
            self.editor.value = format_value(value)
            if not self.editor.has_focus:
                self.editor.cursor_position = 0  # show where a long path starts
        elif isinstance(self.editor, Switch):
            self.editor.value = bool(value)
        elif isinstance(self.editor, Select):
            self.editor.value = value

    # -- validation ----------------------------------------------------------------------------
    def show_problem(self, message: str | None) -> str | None:
        """Show the form's verdict on this field; return the message shown (with any external)."""
        if (
            message != self.problem
            or isinstance(self.editor, Input)
            and (self.editor.has_class("-invalid") != bool(message))
        ):
            self.problem = message
            if isinstance(self.editor, Input):
                self.editor.set_class(bool(message), "-invalid")
                self.editor.set_class(not message, "-valid")
            self._show()
        message = self.problem or self.external
        return form_words(message) if message else message

    def set_external(self, message: str | None, until_changed: bool = False) -> None:
        """Show an error found outside the form (the data file, the model) next to this field.

        `until_changed`: the error (a refused Start) goes as soon as the field's value changes;
        otherwise it stays until the check that found it runs again.
        """
        self.external = message
        self._external_until_changed = until_changed and message is not None
        self._show()

    def on_mount(self) -> None:
        """A field mounted after the form was checked (a deferred tab): show its verdict."""
        if not self.editor.is_mounted:
            self.call_after_refresh(self.on_mount)  # its parts are still mounting: soon
            return
        self._ready = True
        if self._pending is not _NOTHING:
            value, self._pending = self._pending, _NOTHING
            with self.editor.prevent(Select.Changed, Switch.Changed):
                self.set_value(value)
            if isinstance(self.editor, Switch):
                self.query_one(".switch-state", Static).update(self._switch_text())
        self._show()

    def _show(self) -> None:
        message = self.problem or self.external
        message = form_words(message) if message else message
        if message == self._shown or not self._ready:
            return
        self._shown = message
        self.query_one(".field-error", Static).update(message or "")
        self.set_class(bool(message), "-invalid")

    def clear_start_error(self) -> None:
        """Drop an error a refused Start put here (the form changed, so it may no longer hold).

        Errors from the model and data checks stay until those checks run again.
        """
        if self._external_until_changed:
            self.set_external(None)

    def _changed(self) -> None:
        self.post_message(self.Changed(self))

    def on_input_changed(self, event: Input.Changed) -> None:
        """Typing: tell the form."""
        event.stop()
        self._changed()

    def on_select_changed(self, event: Select.Changed) -> None:
        """A choice: tell the form."""
        event.stop()
        self._changed()

    def on_switch_changed(self, event: Switch.Changed) -> None:
        """A toggle: say on / off beside it, and tell the form."""
        event.stop()
        if self.is_mounted:
            self.query_one(".switch-state", Static).update(self._switch_text())
        self._changed()

    def on_descendant_blur(self) -> None:
        """Leaving a long path: show its start (a leading '/' scrolled out of view misleads)."""
        if isinstance(self.editor, Input) and not self.editor.has_focus:
            self.editor.cursor_position = 0
