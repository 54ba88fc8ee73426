"""The setup form: model, data, LoRA and training settings, validated as you type; Start launches."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import (
    Button,
    Collapsible,
    Footer,
    Input,
    Label,
    Select,
    Static,
    TabbedContent,
    TabPane,
)

from engine.config import TASK_NAMES, RunConfig
from tui import keymap
from tui.forms import launching
from tui.forms.field_text import task_help
from tui.forms.form_spec import DATA_KEYS, MODEL_KEYS, PLACEHOLDERS, TAB_OF, TABS, field_options
from tui.forms.setup_form import FormCheck, SetupForm, field_problems, read_settings, save_problem
from tui.forms.task_choice import DECODER_TASK, TaskChoice
from tui.inspector import Inspector
from tui.messages import DataChecked, ModelChecked, ModelsFound, PreflightDone, RunLaunched
from tui.paths import display_path
from tui.widgets.data_preview import DataPreview
from tui.widgets.deferred import Deferred
from tui.widgets.form_field import FormField, field_label, form_words
from tui.widgets.settings_tab import SettingsTab
from tui.widgets.target_modules import TargetModules

DEFERRED_TABS = ("lora", "training")


class SetupScreen(Screen[None]):
    """Set up a run: every field is checked as you type and Start stays greyed until all pass."""

    CSS_PATH = "setup.tcss"
    AUTO_FOCUS = "#in-model_name"  # type straight away; shift+tab reaches the tab bar
    BINDINGS = keymap.keys("setup")

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
        self.form = SetupForm(task=self.initial.task)
        self.task_choice = TaskChoice(self.initial.task, given=config is not None)
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
        self._check_timer: Timer | None = None
        self._new_file = False  # the data file changed since the last check
        self.inspector = Inspector(self)
        self._revalidate_pending = False
        self._refused_with: dict[str, Any] | None = None  # the form a refused Start had

    # -- layout ----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        """Four tabs of fields, a status line and the keys."""
        more_open = self.app.size.height >= 34  # room for everything: the extra settings open
        after = self._after_fields()
        with TabbedContent(id="setup-tabs"):
            for tab, (title, main, more) in TABS.items():
                body = SettingsTab(
                    title,
                    [self.fields[name] for name in main],
                    [self.fields[name] for name in more],
                    after=after,
                    # below the settings: at 80x24 the eval file stays one key away
                    below=[DataPreview(id="data-preview")] if tab == "data" else [],
                    more_open=more_open,
                )
                with TabPane(title, id=f"tab-{tab}"):
                    # The LoRA and Training tabs (most of the widgets) are mounted after the
                    # first frame: the form shows at once instead of after ~2 s of styling.
                    yield Deferred(body) if tab in DEFERRED_TABS else body
        yield Static("", id="help-line", markup=False)
        with Horizontal(id="setup-bar"):
            yield Static("", id="setup-status", markup=False)
            yield Button("Start ^r", id="start-button", compact=True, variant="success")
            yield Button("Add to queue ^g", id="queue-button", compact=True)
        yield Footer(compact=True)

    def _after_fields(self) -> dict[str, list[Widget]]:
        """What stands right below a field: the model's summary and the task; the targets."""
        task = self.initial.task if self.initial.task in TASK_NAMES else TASK_NAMES[0]
        task_row = Horizontal(
            Label("task", classes="field-label"),
            Select(
                [(name, name) for name in TASK_NAMES],
                value=task,
                allow_blank=False,
                compact=True,
                id="in-task",
            ),
            Static(task_help(self.initial.task), classes="field-help", id="task-help"),
            classes="field-row form-field",
        )
        model_info = Static("checking the model…", id="model-info", markup=False)
        return {"model_name": [model_info, task_row], "lora_dropout": [self.targets]}

    def on_mount(self) -> None:
        """Fill the form, then look at the model and data in the background."""
        self.load_config(self.initial)
        self.inspector.find_models()

    def on_deferred_mounted(self) -> None:
        """The deferred tabs are there: check their fields too."""
        self.revalidate()

    # -- edits (the handlers stay here: @on only registers on a Screen's own class) --------------
    @on(Select.Changed, "#in-task")
    def _task_changed(self, event: Select.Changed) -> None:
        value = str(event.value)
        self.task_choice.shown(value)
        self.query_one("#task-help", Static).update(task_help(value))
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

    # -- the form's contents and checks ---------------------------------------------------------
    @property
    def model_modules(self) -> list[str]:
        """The linear modules of the inspected model (LoRA's possible targets)."""
        return self.form.model_modules

    @model_modules.setter
    def model_modules(self, modules: list[str]) -> None:
        self.form.model_modules = modules

    def _sync_form(self) -> SetupForm:
        """The form's state with what every editor holds now."""
        self.form.values = {name: f.value for name, f in self.fields.items()}
        self.form.target_modules = self.targets.value
        for select in self.query("#in-task").results(Select):
            self.form.task = str(select.value)
        return self.form

    def form_config(self, skip: str | None = None) -> RunConfig:
        """The config the form shows (fields that do not convert keep their defaults)."""
        return self._sync_form().config(skip)

    def sweep_values(self) -> dict[str, list[Any]]:
        """The settings given several values (field name -> values): the grid of a sweep."""
        return self._sync_form().sweep_values()

    def load_config(self, config: RunConfig) -> None:
        """Show a config in every field (e.g. a loaded file or a previous run's settings)."""
        self.task_choice.given |= config is not self.initial
        self.initial = config.copy()
        for name, field in self.fields.items():
            if name in ("text_column", "label_column"):
                self._set_column_options(field, [], config.get(name))
            field.set_value(config.get(name))
        self.targets.set_value(config.lora.target_modules)
        if self.is_mounted and config.task in TASK_NAMES:
            self.query_one("#in-task", Select).value = config.task
        form = self._sync_form()  # first: the right side of an assignment runs before its target
        form.loaded = form.snapshot()
        self.revalidate()
        self.schedule_checks(delay=0.0)

    def edited(self) -> bool:
        """True when the form differs from the settings it was opened (or last loaded) with."""
        return self._sync_form().edited()

    def _form_text(self) -> dict[str, Any]:
        """What every editor holds now (text as typed, so a sweep or a typo counts as a change)."""
        return self._sync_form().snapshot()

    def schedule_checks(self, delay: float) -> None:
        """Re-inspect the model and the data once the user pauses typing."""
        if self._check_timer is not None:
            self._check_timer.stop()
        self._check_timer = self.set_timer(max(delay, 0.01), self._run_checks)

    def _run_checks(self) -> None:
        cfg = self.form_config()
        model_key = (
            cfg.model.model_name,
            cfg.model.trust_remote_code,
            cfg.model.allow_pickle_weights,
            cfg.task,
        )
        if model_key != self.model_key and "model_name" not in self._bad_fields():
            self.model_key = model_key
            self.query_one("#model-info", Static).update("checking the model…")
            self.inspector.check_model(*model_key)
        data_key = (*(cfg.get(name) for name in DATA_KEYS), cfg.task, cfg.model.model_name)
        if data_key != self.data_key:
            # A new data file: a column chosen for the old one gives way to auto-detect.
            self._new_file = self.data_key[:1] != data_key[:1] and bool(self.data_key)
            self.data_key = data_key
            self.inspector.check_data(data_key, cfg)

    def _bad_fields(self) -> set[str]:
        return {name for name, f in self.fields.items() if f.problem}

    # -- what the inspector found ------------------------------------------------------------------
    def on_models_found(self, message: ModelsFound) -> None:
        """Suggest the models that work offline as the user types a model name."""
        editor = self.fields["model_name"].editor
        if isinstance(editor, Input):
            editor.suggester = SuggestFromList(message.names, case_sensitive=False)

    def on_model_checked(self, message: ModelChecked) -> None:
        """Show the model's summary, or its error next to the field it concerns."""
        if message.name != repr(self.model_key):
            return
        info_line = self.query_one("#model-info", Static)
        for name in MODEL_KEYS:
            self.fields[name].set_external(None)
        if message.error is not None:
            exc = message.error
            name = (exc.field or "model.model_name").split(".")[-1]
            target = self.fields.get(name, self.fields["model_name"])
            target.set_external(exc.message + (f" ({exc.hint})" if exc.hint else ""))
            info_line.update("")
            self.model_modules = []
        else:
            info = message.info
            assert info is not None
            info_line.update(f"{info.summary()}\nLoRA can adapt: {', '.join(info.linear_modules)}")
            self.model_modules = info.linear_modules
            self.targets.set_modules(info.linear_modules, info.auto_targets)
            task = self.query_one("#in-task", Select)
            if note := self.task_choice.switch_for(info.architecture, str(task.value)):
                task.value = DECODER_TASK
                self.notify(note, timeout=6)
        self.revalidate()

    def on_data_checked(self, message: DataChecked) -> None:
        """Show the data preview and put any data error next to its field."""
        if message.key != self.data_key:
            return
        for name in DATA_KEYS:
            if name in self.fields:
                self.fields[name].set_external(None)
        info = message.info
        error = message.error or (info.error if info else None)
        if error is not None:
            name = (error.field or "data.data_file_path").split(".")[-1]
            target = self.fields.get(name, self.fields["data_file_path"])
            where = f"{Path(error.where).name}: " if error.where and "/" in error.where else ""
            target.set_external(where + error.message + (f" ({error.hint})" if error.hint else ""))
        if info is not None:
            for name in ("text_column", "label_column"):
                field = self.fields[name]
                value = field.value
                if value and info.columns and value not in info.columns and self._new_file:
                    # A column named for another file: back to auto-detect for this one.
                    self.notify(
                        f"{field_label(name)}: this file has no column '{value}', "
                        "back to auto-detect",
                        timeout=6,
                    )
                    value = ""
                    field.set_value("")
                self._set_column_options(field, info.columns, value, getattr(info, name))
            self._new_file = False
        self.query_one(DataPreview).show(info)
        self.revalidate()

    def _set_column_options(
        self, field: FormField, columns: list[str], value: str, detected: str = ""
    ) -> None:
        select = field.editor
        assert isinstance(select, Select)
        names = list(columns) + ([value] if value and value not in columns else [])
        options = [(f"auto ({detected})" if detected else "auto", "")] + [(c, c) for c in names]
        with select.prevent(Select.Changed):
            select.set_options(options)
            select.value = value

    # -- validation --------------------------------------------------------------------------------
    def revalidate(self) -> None:
        """Check every field against the rest of the form; update messages, tabs and Start."""
        self._revalidate_pending = False
        form = self._sync_form()
        cfg, problems = form.read()
        rules = cfg.problems()
        if "validation_fraction" in self.fields:  # an eval file replaces the held-out share
            self.fields["validation_fraction"].disabled = bool(cfg.data.eval_file_path.strip())
        for name, field in self.fields.items():
            message = field.show_problem(problems.get(name) or rules.get(field.path))
            if message:
                problems[name] = message
        target_problem = form.target_problem(rules)
        self.targets.show_error(target_problem)
        if target_problem:
            problems["target_modules"] = target_problem
        check = FormCheck(problems, form.sweep_values())
        tabs = self.query_one(TabbedContent)
        for tab, (title, _, _) in TABS.items():
            label = title + (" !" if tab in check.tabs_with_problems() else "")
            if tabs.get_tab(f"tab-{tab}").label_text != label:
                tabs.get_tab(f"tab-{tab}").label = label
        for more in self.query(Collapsible):
            if more.collapsed and more.query(".form-field.-invalid"):
                more.collapsed = False
        self.valid = not problems
        status = self.query_one("#setup-status", Static)
        status.set_class(bool(problems), "-invalid")
        self.query_one("#setup-bar").set_class(bool(problems), "-invalid")
        self.query_one("#start-button", Button).label = (
            "Queue sweep ^r" if check.sweep else "Start ^r"
        )
        self.query_one("#queue-button", Button).label = (
            "Save to queue ^g" if self.queue_entry else "Add to queue ^g"
        )
        for button in self.query("#setup-bar Button").results(Button):
            button.disabled = bool(problems)
        status.update(check.status(self.queue_entry))

    # -- Start and Queue: the run in a new engine, or in the queue (a sweep too) -----------------
    def action_start(self) -> None:
        """Launch the engine with the form's config, then open the monitor (a sweep is queued)."""
        if not self._can_begin(self.starting):
            return
        if self.sweep_values() or self.queue_entry:
            self.action_queue()
            return
        self.starting = True
        self._status("Starting the engine…")
        self.launch_run(self.form_config())

    def _can_begin(self, busy: bool) -> bool:
        """Check the form once more: True when it is valid and the same job is not running."""
        self.revalidate()
        return self.valid and not busy

    def _status(self, text: str) -> None:
        self.query_one("#setup-status", Static).update(text)

    @work(thread=True, exit_on_error=False, group="launch")
    def launch_run(self, config: RunConfig) -> None:
        """Create the run directory and start the engine process."""
        self.post_message(launching.start_run(config, self.app.runs_root))

    def on_run_launched(self, message: RunLaunched) -> None:
        """Open the monitor, or show why the run could not start."""
        self.starting = False
        if message.queued:
            self.queue_entry = ""
            self.revalidate()
            self.app.clear_notifications()
            self.app.open_runs()
            self.app.notify(message.queued, title="Queue")
            return
        if message.run_dir is not None:
            self.revalidate()
            self.app.clear_notifications()  # an estimate's toast would sit on the new run's log
            self.app.open_monitor(message.run_dir)
            return
        exc = message.error
        assert exc is not None
        for path, text in field_problems(exc).items():
            field = self.fields.get(path.split(".")[-1])
            if field is not None:
                field.set_external(text, until_changed=True)
        self._refused_with = self._form_text()
        self.revalidate()
        self.notify(form_words(exc.one_line()), title="Could not start", severity="error")

    def action_queue(self) -> None:
        """Add the form's run (or every run of its sweep) to the queue; it starts when its turn
        comes, at once when nothing is training. Editing a queued run saves it back instead."""
        self.revalidate()
        if not self.valid or self.starting:
            return
        self.starting = True
        self._status("Queueing…")
        self.queue_runs(self.form_config(), self.sweep_values(), self.queue_entry)

    @work(thread=True, exit_on_error=False, group="launch")
    def queue_runs(self, config: RunConfig, sweep: dict[str, list[Any]], entry: str) -> None:
        """Write the queue entries (and start the first when no engine is busy)."""
        self.post_message(launching.queue_runs(self.app.runs_root, config, sweep, entry))

    # -- Estimate: a preflight in its own process, shown in the status line --------------------
    def action_estimate(self) -> None:
        """Time a few real training steps: speed, run time and peak memory, before starting."""
        if not self._can_begin(self.estimating):
            return
        self.estimating = True
        self._status("Estimating: timing a few steps…")
        self.run_preflight(self.form_config())

    @work(thread=True, exit_on_error=False, group="preflight")
    def run_preflight(self, config: RunConfig) -> None:
        """Run `finetune-tui preflight` in its own process (torch stays out of the UI)."""
        self.post_message(launching.estimate(config, self.app.runs_root))

    def on_preflight_done(self, message: PreflightDone) -> None:
        """Show the estimate in the status line (and as a notification)."""
        self.estimating = False
        status = self.query_one("#setup-status", Static)
        if message.error:
            status.update(f"Estimate: {message.error}")
            self.notify(message.error, title="Estimate", severity="warning")
            return
        status.update("Estimate: " + " · ".join(message.lines[:2]))
        self.notify("\n".join(message.lines), title="Estimate", timeout=15)

    # -- Save and Load: the form's settings to and from a TOML file -----------------------------
    def action_save(self) -> None:
        """Save the form as a TOML config."""
        from tui.paths import confirm_overwrite, free_path
        from tui.widgets.dialogs import PathPrompt

        def save(path: str | None) -> None:
            if not path:
                return
            target = Path(path).expanduser()

            def write(yes: bool | None = True) -> None:
                if yes:
                    self.form_config().save(target)
                    self.notify(f"config saved to {target}")

            confirm_overwrite(self.app, target, write)

        name = self.form_config().output.run_name or "finetune"
        suggestion = free_path(Path.home() / f"{name}.toml")
        self.app.push_screen(
            PathPrompt("Save the settings as TOML", display_path(suggestion), save_problem), save
        )

    def action_load(self) -> None:
        """Fill the form from a TOML config."""
        from tui.widgets.dialogs import PathPrompt

        loaded: list[RunConfig] = []

        def check(path: str) -> str | None:
            settings = read_settings(path)
            if isinstance(settings, str):
                return settings
            loaded.append(settings)
            return None

        def apply(path: str | None) -> None:
            if path and loaded:
                self.load_config(loaded[-1])
                self.notify(f"settings loaded from {path}")

        self.app.push_screen(
            PathPrompt("Load settings from a TOML file", "finetune.toml", check), apply
        )
