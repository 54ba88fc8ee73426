"""LoRA target modules: 'auto', 'all-linear', or a checklist of the model's linear modules."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Label, Select, SelectionList, Static

CHOOSE = "choose"


class TargetModules(Vertical):
    """Pick which linear layers get LoRA adapters; the checklist appears for 'choose'."""

    @dataclass
    class Changed(Message):
        """The target modules setting changed."""

        widget: TargetModules

    def __init__(self, value: str = "auto") -> None:
        super().__init__(id="field-target_modules", classes="form-field")
        self.modules: list[str] = []
        self.auto: list[str] = []
        self.chosen: list[str] = []
        self._pending = value
        self._quiet = False
        self._ready = False  # composed (a deferred tab mounts it after the first frame)

    def compose(self) -> ComposeResult:
        """Mode select, help, checklist and message."""
        with Horizontal(classes="field-row"):
            yield Label("target modules", classes="field-label")
            yield Select(
                [("auto", "auto"), ("all-linear", "all-linear"), ("choose…", CHOOSE)],
                value="auto",
                allow_blank=False,
                compact=True,
                id="in-target_modules",
            )
            yield Static("", id="targets-help", classes="field-help", markup=False)
        yield SelectionList[str](id="targets-list", compact=True)
        yield Static("", classes="field-error", markup=False)

    def on_mount(self) -> None:
        """Apply the initial value."""
        if not any(s.is_mounted for s in self.query("#in-target_modules")):
            self.call_after_refresh(self.on_mount)  # its parts are still mounting: soon
            return
        self._ready = True
        self.set_value(self._pending)

    @property
    def value(self) -> str:
        """The config text: 'auto', 'all-linear' or a comma-separated list."""
        if not self._ready:  # a deferred tab: the value it will show
            return self._pending
        mode = self.query_one(Select).value
        if mode == CHOOSE:
            return ",".join(self.query_one(SelectionList).selected)
        return str(mode)

    def set_value(self, value: str) -> None:
        """Show a config value ('auto', 'all-linear' or a list of names)."""
        if not self._ready:
            self._pending = value
            return
        names = [s.strip() for s in value.split(",") if s.strip()]
        self._quiet = True
        if names in (["auto"], ["all-linear"]):
            self.query_one(Select).value = names[0]
        else:
            self.chosen = names
            self.query_one(Select).value = CHOOSE
        self._refresh_list()
        self._quiet = False

    def set_modules(self, modules: list[str], auto: list[str]) -> None:
        """The linear modules of the inspected model, and what 'auto' picks among them."""
        self.modules, self.auto = modules, auto
        if self._ready:
            self._refresh_list()

    def _refresh_list(self) -> None:
        listing = self.query_one(SelectionList)
        choose = self.query_one(Select).value == CHOOSE
        listing.display = choose and bool(self.modules or self.chosen)
        chosen = self.chosen or self.auto
        names = self.modules + [c for c in chosen if c not in self.modules]
        listing.clear_options()
        listing.add_options([(n, n, n in chosen) for n in names])
        help_text = {
            "auto": f"attention projections: {', '.join(self.auto) or '…'}",
            "all-linear": f"every linear layer: {', '.join(self.modules) or '…'}",
        }
        self.query_one("#targets-help", Static).update(
            help_text.get(str(self.query_one(Select).value), "tick the layers to adapt")
        )

    def show_error(self, message: str | None) -> None:
        """Show a message under the setting."""
        if not self._ready:
            return
        self.query_one(".field-error", Static).update(message or "")
        self.set_class(bool(message), "-invalid")

    def on_select_changed(self, event: Select.Changed) -> None:
        """Switch between auto / all-linear / a checklist."""
        event.stop()
        if event.value == CHOOSE and not self.chosen:
            self.chosen = list(self.auto)
        self._refresh_list()
        if not self._quiet:
            self.post_message(self.Changed(self))

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged) -> None:
        """A module was ticked or unticked."""
        event.stop()
        if not self._quiet and self.query_one(Select).value == CHOOSE:
            self.chosen = list(self.query_one(SelectionList).selected)
            self.post_message(self.Changed(self))
