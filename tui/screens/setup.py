"""The setup form: model, data, LoRA and training settings, validated as you type; Start launches."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import (
    Button,
    Collapsible,
    Footer,
    Label,
    Select,
    Static,
    TabbedContent,
    TabPane,
)

from engine.config import TASK_NAMES, RunConfig
from tui.forms.form_spec import DATA_KEYS, MODEL_KEYS, PLACEHOLDERS, TAB_OF, TABS, field_options
from tui.forms.inspection import InspectionMixin
from tui.screens.setup_estimate import EstimateMixin
from tui.screens.setup_files import SettingsFilesMixin
from tui.screens.setup_form import FormMixin
from tui.screens.setup_launch import LaunchMixin
from tui.widgets.data_preview import DataPreview
from tui.widgets.deferred import Deferred
from tui.widgets.form_field import FormField, field_label
from tui.widgets.target_modules import TargetModules

DEFERRED_TABS = ("lora", "training")
TASK_HELP = {
    "classification": "Text classification: texts with labels -> a classifier",
    "causal-lm": "Instruction tuning: prompts/chats with answers -> an LLM adapter (loss on answers)",
}


def task_help(task: str) -> str:
    """One line about a task for the form."""
    return TASK_HELP.get(task, task)


class SetupScreen(
    LaunchMixin, InspectionMixin, EstimateMixin, SettingsFilesMixin, FormMixin, Screen[None]
):
    """Set up a run: every field is checked as you type and Start stays greyed until all pass."""

    CSS_PATH = "setup.tcss"
    AUTO_FOCUS = "#in-model_name"  # type straight away; shift+tab reaches the tab bar
    BINDINGS = [
        # Start and Queue are buttons in the status bar (with their keys), so the footer keeps
        # room for ^q Quit at 80 columns.
        Binding("ctrl+r", "start", "Start", priority=True, show=False),
        Binding("ctrl+g", "queue", "Queue", priority=True, show=False),
        # priority: an Input would otherwise take ctrl+e as "end of line"
        Binding("ctrl+e", "estimate", "Estimate", priority=True),
        Binding("ctrl+o", "load", "Load"),
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+t", "browse", "Pick data file", show=False),
        Binding("ctrl+l", "runs", "Runs"),
        Binding("escape", "back", "Back"),
        # The tabs from anywhere in the form; the cursor lands in the tab's first field. (alt+digit
        # arrives as a symbol from many terminals, so it is not used.)
        Binding(
            "ctrl+pagedown,alt+right", "next_tab(1)", "Next tab", key_display="^PgDn", priority=True
        ),
        Binding("ctrl+pageup,alt+left", "next_tab(-1)", "Previous tab", show=False, priority=True),
    ]

    valid: reactive[bool] = reactive(False, bindings=True)
    """True when every field passes its checks (Start and Estimate are enabled)."""
    starting: reactive[bool] = reactive(False, bindings=True)
    """True while the engine is being launched."""
    estimating: reactive[bool] = reactive(False, bindings=True)
    """True while a preflight estimate runs."""

    def __init__(self, config: RunConfig | None = None, queue_entry: str = "") -> None:
        super().__init__()
        self.queue_entry = queue_entry  # editing this queued run (ctrl+g saves it back)
        self.initial = config.copy() if config is not None else RunConfig()
        special = field_options()
        self.fields: dict[str, FormField] = {}
        self.targets = TargetModules(self.initial.lora.target_modules)
        for name in TAB_OF:
            if name != "target_modules":
                self.fields[name] = FormField(
                    name,
                    partial(self.form_config, skip=name),
                    placeholder=PLACEHOLDERS.get(name, ""),
                    **special.get(name, {}),
                )
        self.model_key: tuple[Any, ...] = ()
        self.data_key: tuple[Any, ...] = ()
        self.model_modules: list[str] = []
        self._check_timer: Timer | None = None
        self._revalidate_pending = False
        self.loaded_text: dict[str, Any] = {}
        self._refused_with: dict[str, Any] | None = None  # the form a refused Start had

    # -- layout ----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        """Four tabs of fields, a status line and the keys."""
        with TabbedContent(id="setup-tabs"):
            for tab, (title, main, more) in TABS.items():
                # The scroll area takes no focus of its own: tab from the tab bar goes straight to
                # the first field (a focused VerticalScroll shows nothing and swallows typing), and
                # shift+tab from the first field goes straight back to the tab bar. Focusing a
                # field still scrolls it into view; the mouse wheel still scrolls.
                form = VerticalScroll(classes="form", can_focus=False)
                # The LoRA and Training tabs (most of the widgets) are mounted after the first
                # frame: the form shows at once instead of after ~2 s of styling every field.
                body = Deferred(form) if tab in DEFERRED_TABS else form
                with TabPane(title, id=f"tab-{tab}"), body:
                    yield from self._tab_body(tab, main, more)
        yield Static("", id="help-line", markup=False)
        with Horizontal(id="setup-bar"):
            yield Static("", id="setup-status", markup=False)
            yield Button("Start ^r", id="start-button", compact=True, variant="success")
            yield Button("Add to queue ^g", id="queue-button", compact=True)
        yield Footer(compact=True)

    def _tab_body(self, tab: str, main: list[str], more: list[str]) -> ComposeResult:
        for name in main:
            if name in ("data_file_path", "eval_file_path"):
                with Horizontal(classes="path-row"):
                    yield self.fields[name]
                    yield Button("Browse…", id=f"browse-{name}", classes="browse", compact=True)
            else:
                yield self.fields[name]
            if name == "model_name":
                yield Static("checking the model…", id="model-info", markup=False)
                with Horizontal(classes="field-row form-field"):
                    yield Label("task", classes="field-label")
                    yield Select(
                        [(name, name) for name in TASK_NAMES],
                        value=self.initial.task
                        if self.initial.task in TASK_NAMES
                        else TASK_NAMES[0],
                        allow_blank=False,
                        compact=True,
                        id="in-task",
                    )
                    yield Static(task_help(self.initial.task), classes="field-help", id="task-help")
            elif name == "lora_dropout":
                yield self.targets
        tall = self.app.size.height >= 34  # room for everything: the extra settings open
        more_box = Collapsible(
            title=f"More {TABS[tab][0]} settings", classes="more", collapsed=not tall
        )
        with more_box:
            for name in more:
                if name == "eval_file_path":
                    with Horizontal(classes="path-row"):
                        yield self.fields[name]
                        yield Button("Browse…", id=f"browse-{name}", classes="browse", compact=True)
                else:
                    yield self.fields[name]
        if tab == "data":  # below the settings: at 80x24 the eval file stays one key away
            yield DataPreview(id="data-preview")

    def on_mount(self) -> None:
        """Fill the form, then look at the model and data in the background."""
        self.load_config(self.initial)
        self.find_models()

    def on_deferred_mounted(self) -> None:
        """The deferred tabs are there: check their fields too."""
        self.revalidate()

    # -- edits (the handlers stay here: @on only registers on a Screen's own class) --------------
    @on(Select.Changed, "#in-task")
    def _task_changed(self, event: Select.Changed) -> None:
        self.query_one("#task-help", Static).update(task_help(str(event.value)))
        self.revalidate()
        self.schedule_checks(delay=0.2)  # the data reads differently for another task

    @on(FormField.Changed)
    @on(TargetModules.Changed)
    def _field_changed(self, event: FormField.Changed | TargetModules.Changed) -> None:
        if self._refused_with is not None and self._form_text() != self._refused_with:
            self._refused_with = None  # e.g. a new folder, or overwrite turned on
            for form_field in self.fields.values():
                form_field.clear_start_error()
        if not self._revalidate_pending:  # one check for a burst of changes (e.g. a loaded file)
            self._revalidate_pending = True
            self.call_after_refresh(self.revalidate)
        name = getattr(getattr(event, "field", None), "field_name", "")
        if name in MODEL_KEYS or name in DATA_KEYS:
            self.schedule_checks(delay=0.5)

    # -- actions -----------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Grey out Start while the form is invalid or a launch is under way."""
        if action == "start":
            return None if self.starting or not self.valid else True
        if action == "estimate":
            return None if self.estimating or not self.valid else True
        if action == "back":
            return True if len(self.app.screen_stack) > 2 else None
        return True

    def action_tab(self, index: int) -> None:
        """Open the index-th tab and put the cursor in its first field."""
        names = list(TABS)
        tab = names[index % len(names)]
        self.query_one(TabbedContent).active = f"tab-{tab}"
        self.call_after_refresh(self._focus_first_field, tab)

    def action_next_tab(self, step: int) -> None:
        """Open the next (or previous) tab."""
        active = self.query_one(TabbedContent).active.removeprefix("tab-")
        names = list(TABS)
        index = names.index(active) if active in names else 0
        self.action_tab(index + step)

    def _focus_first_field(self, tab: str) -> None:
        pane = self.query_one(f"#tab-{tab}", TabPane)
        for widget in pane.query("Input, Select, Switch, SelectionList"):
            if widget.focusable:
                widget.focus()
                return

    def on_descendant_blur(self) -> None:
        """Focus on a field that became disabled (e.g. the held-out share) goes to the next one."""
        self.call_after_refresh(self._keep_focus)

    def _keep_focus(self) -> None:
        if self.focused is None and self.is_attached and self.app.screen is self:
            self.focus_next()

    def action_browse(self, name: str = "data_file_path") -> None:
        """Pick the data (or eval) file: a folder tree, a typed path, home, the last folder."""
        from tui.widgets.file_picker import FilePicker

        current = self.fields[name].value
        last = getattr(self.app, "last_folder", None)
        start = Path(current).expanduser() if current else (last or Path.cwd())

        def chosen(path: Path | None) -> None:
            if path is not None:
                self.app.last_folder = path.parent  # type: ignore[attr-defined]
                self.fields[name].set_value(str(path))
                self.query_one(TabbedContent).active = "tab-data"

        self.app.push_screen(FilePicker(start, last=last), chosen)

    @on(Button.Pressed, ".browse")
    def _browse_pressed(self, event: Button.Pressed) -> None:
        self.action_browse(str(event.button.id).removeprefix("browse-"))

    @on(Button.Pressed, "#start-button")
    def _start_pressed(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#queue-button")
    def _queue_pressed(self) -> None:
        self.action_queue()

    def on_descendant_focus(self) -> None:
        """Show the focused field's whole help text when its row cuts it short."""
        self.call_after_refresh(self._show_help)

    def _show_help(self) -> None:
        line = self.query_one("#help-line", Static)
        focused = self.focused
        field = next(
            (a for a in (focused.ancestors if focused else []) if isinstance(a, FormField)), None
        )
        text = ""
        if field is not None:
            shown = field.query_one(".field-help", Static)
            # A help column cut short, or none (paths): the whole help on its own line.
            if not shown.display or shown.size.width < len(field.help_text):
                text = f"{field_label(field.field_name)}: {field.help_text}"
        elif focused is not None and focused.id == "in-task":
            task = str(self.query_one("#in-task", Select).value)
            if self.query_one("#task-help", Static).size.width < len(task_help(task)):
                text = f"task: {task_help(task)}"
        line.update(text)
        line.display = bool(text)

    def action_runs(self) -> None:
        """Show the run list."""
        self.app.open_runs()

    def action_back(self) -> None:
        """Back to the previous screen (runs keep going); an edited form asks first."""
        if len(self.app.screen_stack) <= 2:
            return
        if not self.edited():
            self.app.pop_screen()
            return
        from tui.widgets.dialogs import Confirm

        def answered(yes: bool | None) -> None:
            if yes and self.app.screen is self:
                self.app.pop_screen()

        self.app.push_screen(
            Confirm("Drop the changes made in this form?", yes="Drop", no="Keep editing"),
            answered,
        )
