"""Small modal dialogs: ask for a path, confirm a choice."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from tui import keymap


class PathPrompt(ModalScreen[str | None]):
    """Ask for a file path; `check` may return an error message to keep the dialog open."""

    BINDINGS = keymap.keys("path_prompt")

    def __init__(
        self, title: str, value: str = "", check: Callable[[str], str | None] | None = None
    ) -> None:
        super().__init__()
        self.title_text = title
        self.initial = value
        self.check = check

    def compose(self) -> ComposeResult:
        """Title, path input, error line and buttons."""
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Input(self.initial, id="prompt-path", compact=True)
            yield Static("", id="prompt-error", classes="field-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("OK", variant="primary", id="ok", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        """Hide the empty error line."""
        self.query_one("#prompt-error").display = False

    def _submit(self) -> None:
        value = self.query_one("#prompt-path", Input).value.strip()
        if not value:
            return
        problem = self.check(value) if self.check else None
        if problem:
            error = self.query_one("#prompt-error", Static)
            error.update(problem)
            error.display = True
            return
        self.dismiss(value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter accepts."""
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """OK accepts; Cancel closes."""
        event.stop()
        if event.button.id == "ok":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        """Close without a path."""
        self.dismiss(None)


class Confirm(ModalScreen[bool]):
    """A yes / no question."""

    BINDINGS = keymap.keys("confirm")

    def __init__(self, question: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.question = question
        self.labels = (yes, no)

    def compose(self) -> ComposeResult:
        """The question and two buttons."""
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="dialog-title", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.labels[0], variant="warning", id="yes", compact=True)
                yield Button(self.labels[1], id="no", compact=True)

    def on_mount(self) -> None:
        """Default to the safe answer."""
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Answer with the pressed button."""
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        """Answer from the keyboard."""
        self.dismiss(yes)
