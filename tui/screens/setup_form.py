"""The setup form's contents: the config its fields hold, a config shown in them, and the checks."""

from __future__ import annotations

from typing import Any

from textual.widgets import Button, Collapsible, Select, Static, TabbedContent

from engine.config import TASK_NAMES, RunConfig, coerce
from tui.forms.form_spec import TAB_OF, TABS
from tui.validators import sweep_parts
from tui.widgets.form_field import FIELDS, SECTION_OF, FormField, field_label
from tui.widgets.target_modules import TargetModules


class SetupParts:
    """What the setup form's mixins use of the screen they are mixed into (for type checkers)."""

    fields: dict[str, FormField]
    targets: TargetModules
    queue_entry: str
    valid: bool
    app: Any
    is_mounted: bool
    query: Any
    query_one: Any
    notify: Any
    post_message: Any


class FormMixin(SetupParts):
    """Reads the setup form into a RunConfig, fills it from one, and checks every field."""

    initial: RunConfig
    model_modules: list[str]
    loaded_text: dict[str, Any]
    _revalidate_pending: bool
    schedule_checks: Any
    _set_column_options: Any

    def form_config(self, skip: str | None = None) -> RunConfig:
        """The config the form shows (fields that do not convert keep their defaults)."""
        return self._read_form(skip)[0]

    def _read_form(self, skip: str | None = None) -> tuple[RunConfig, dict[str, str]]:
        """The form's config, and the fields whose text does not convert (name -> message)."""
        cfg = RunConfig()
        bad: dict[str, str] = {}
        if self.is_mounted:
            cfg.task = str(self.query_one("#in-task", Select).value)
        for name, field in self.fields.items():
            if name != skip:
                value = field.value
                parts = sweep_parts(name, value) if isinstance(value, str) else []
                try:
                    for part in parts:  # a sweep: every value must convert; the first is shown
                        coerce(FIELDS[name], part)
                    value = parts[0] if parts else value
                    setattr(getattr(cfg, SECTION_OF[name]), name, coerce(FIELDS[name], value))
                except ValueError as exc:
                    bad[name] = str(exc)
        if skip != "target_modules":
            cfg.lora.target_modules = self.targets.value
        return cfg, bad

    def sweep_values(self) -> dict[str, list[Any]]:
        """The settings given several values (field name -> values): the grid of a sweep."""
        sweep: dict[str, list[Any]] = {}
        for name, field in self.fields.items():
            parts = sweep_parts(name, field.value) if isinstance(field.value, str) else []
            values: list[Any] = []
            for part in parts:
                try:
                    value = coerce(FIELDS[name], part)
                except ValueError:
                    continue
                if value not in values:
                    values.append(value)
            if len(values) > 1:
                sweep[name] = values
        return sweep

    def load_config(self, config: RunConfig) -> None:
        """Show a config in every field (e.g. a loaded file or a previous run's settings)."""
        self.initial = config.copy()
        for name, field in self.fields.items():
            if name in ("text_column", "label_column"):
                self._set_column_options(field, [], config.get(name))
            field.set_value(config.get(name))
        self.targets.set_value(config.lora.target_modules)
        if self.is_mounted and config.task in TASK_NAMES:
            self.query_one("#in-task", Select).value = config.task
        self.loaded_text = self._form_text()
        self.revalidate()
        self.schedule_checks(delay=0.0)

    def edited(self) -> bool:
        """True when the form differs from the settings it was opened (or last loaded) with."""
        return self._form_text() != self.loaded_text

    def _form_text(self) -> dict[str, Any]:
        """What every editor holds now (text as typed, so a sweep or a typo counts as a change)."""
        text: dict[str, Any] = {name: f.value for name, f in self.fields.items()}
        text["target_modules"] = self.targets.value
        for select in self.query("#in-task").results(Select):
            text["task"] = select.value
        return text

    # -- validation --------------------------------------------------------------------------------
    def revalidate(self) -> None:
        """Check every field against the rest of the form; update messages, tabs and Start."""
        self._revalidate_pending = False
        cfg, problems = self._read_form()
        rules = cfg.problems()
        if "validation_fraction" in self.fields:  # an eval file replaces the held-out share
            self.fields["validation_fraction"].disabled = bool(cfg.data.eval_file_path.strip())
        for name, field in self.fields.items():
            message = field.show_problem(problems.get(name) or rules.get(field.path))
            if message:
                problems[name] = message
        target_problem = rules.get("lora.target_modules")
        missing = [
            m
            for m in self.targets.value.split(",")
            if self.model_modules
            and m not in ("auto", "all-linear", "")
            and m not in self.model_modules
        ]
        if not target_problem and missing:
            target_problem = (
                f"not in this model: {', '.join(missing)} (it has {', '.join(self.model_modules)})"
            )
        self.targets.show_error(target_problem)
        if target_problem:
            problems["target_modules"] = target_problem
        tabs = self.query_one(TabbedContent)
        for tab, (title, _, _) in TABS.items():
            label = title + (" !" if any(TAB_OF[name] == tab for name in problems) else "")
            if tabs.get_tab(f"tab-{tab}").label_text != label:
                tabs.get_tab(f"tab-{tab}").label = label
        for more in self.query(Collapsible):
            if more.collapsed and more.query(".form-field.-invalid"):
                more.collapsed = False
        self.valid = not problems
        status = self.query_one("#setup-status", Static)
        status.set_class(bool(problems), "-invalid")
        self.query_one("#setup-bar").set_class(bool(problems), "-invalid")
        sweep = self.sweep_values()
        count = 1
        for values in sweep.values():
            count *= len(values)
        self.query_one("#start-button", Button).label = "Queue sweep ^r" if sweep else "Start ^r"
        self.query_one("#queue-button", Button).label = (
            "Save to queue ^g" if self.queue_entry else "Add to queue ^g"
        )
        for button in self.query("#setup-bar Button").results(Button):
            button.disabled = bool(problems)
        if problems:
            name, message = next(iter(problems.items()))
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            status.update(f"{TABS[TAB_OF[name]][0]} › {field_label(name)}: {message}{more}")
        elif self.queue_entry:
            status.update("Editing a queued run: ctrl+g saves it back to the queue")
        elif sweep:
            axes = " × ".join(f"{field_label(n)} ×{len(v)}" for n, v in sweep.items())
            status.update(f"Sweep: {count} runs ({axes})")
        else:
            status.update("Ready")
