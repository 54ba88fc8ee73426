"""The setup form's state without Textual: the text of each field, its RunConfig, sweeps, checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import TASK_NAMES, RunConfig, coerce
from engine.core.errors import ConfigError, UserError
from tui.forms.field_text import FIELDS, SECTION_OF, field_label, sweep_parts
from tui.forms.form_spec import TAB_OF, TABS


@dataclass
class FormCheck:
    """What a check of the whole form found: the problems by field name, the sweep, the status."""

    problems: dict[str, str]
    sweep: dict[str, list[Any]]
    target_problem: str | None = None

    @property
    def valid(self) -> bool:
        """True when no field has a problem (Start and Estimate may run)."""
        return not self.problems

    @property
    def run_count(self) -> int:
        """How many runs the form makes (the size of the sweep's grid; 1 without a sweep)."""
        count = 1
        for values in self.sweep.values():
            count *= len(values)
        return count

    def tabs_with_problems(self) -> set[str]:
        """The tabs that hold a field with a problem (their titles get a mark)."""
        return {TAB_OF[name] for name in self.problems}

    def status(self, queue_entry: str = "") -> str:
        """The status line under the form: the first problem, or what Start does."""
        if self.problems:
            name, message = next(iter(self.problems.items()))
            more = f" (+{len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            return f"{TABS[TAB_OF[name]][0]} › {field_label(name)}: {message}{more}"
        if queue_entry:
            return "Editing a queued run: ctrl+g saves it back to the queue"
        if self.sweep:
            axes = " × ".join(f"{field_label(n)} ×{len(v)}" for n, v in self.sweep.items())
            return f"Sweep: {self.run_count} runs ({axes})"
        return "Ready"


@dataclass
class SetupForm:
    """The form's fields as typed (name -> text or value), the task and the LoRA targets.

    The screen copies its editors in here; everything about what the form means (its config,
    its sweep, its problems, whether it was edited) is worked out here, without widgets.
    """

    values: dict[str, Any] = field(default_factory=dict)
    task: str = TASK_NAMES[0]
    target_modules: str = "auto"
    model_modules: list[str] = field(default_factory=list)
    loaded: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: RunConfig, names: list[str]) -> SetupForm:
        """A form showing `config` in the fields `names` (as loaded: not edited)."""
        form = cls()
        form.show(config, names)
        return form

    def show(self, config: RunConfig, names: list[str] | None = None) -> None:
        """Put a config's values in the fields (e.g. a loaded file); it counts as not edited."""
        for name in names if names is not None else list(self.values):
            self.values[name] = config.get(name)
        self.target_modules = config.lora.target_modules
        if config.task in TASK_NAMES:
            self.task = config.task
        self.loaded = self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        """What every editor holds (text as typed, so a sweep or a typo counts as a change)."""
        text = dict(self.values)
        text["target_modules"] = self.target_modules
        text["task"] = self.task
        return text

    def edited(self) -> bool:
        """True when the form differs from the settings it was opened (or last loaded) with."""
        return self.snapshot() != self.loaded

    def read(self, skip: str | None = None) -> tuple[RunConfig, dict[str, str]]:
        """The form's config, and the fields whose text does not convert (name -> message).

        A field given several values (a sweep) must convert in every value; the first is used.
        Fields that do not convert keep their defaults.
        """
        cfg = RunConfig()
        cfg.task = self.task
        bad: dict[str, str] = {}
        for name, value in self.values.items():
            if name == skip:
                continue
            parts = sweep_parts(name, value) if isinstance(value, str) else []
            try:
                for part in parts:
                    coerce(FIELDS[name], part)
                value = parts[0] if parts else value
                setattr(getattr(cfg, SECTION_OF[name]), name, coerce(FIELDS[name], value))
            except ValueError as exc:
                bad[name] = str(exc)
        if skip != "target_modules":
            cfg.lora.target_modules = self.target_modules
        return cfg, bad

    def config(self, skip: str | None = None) -> RunConfig:
        """The config the form shows (fields that do not convert keep their defaults)."""
        return self.read(skip)[0]

    def sweep_values(self) -> dict[str, list[Any]]:
        """The settings given several values (field name -> values): the grid of a sweep."""
        sweep: dict[str, list[Any]] = {}
        for name, text in self.values.items():
            parts = sweep_parts(name, text) if isinstance(text, str) else []
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

    def missing_targets(self) -> list[str]:
        """LoRA target modules the inspected model does not have ([] before it is inspected)."""
        if not self.model_modules:
            return []
        return [
            m
            for m in self.target_modules.split(",")
            if m not in ("auto", "all-linear", "") and m not in self.model_modules
        ]

    def target_problem(self, rules: dict[str, str]) -> str | None:
        """What is wrong with the LoRA targets: a config rule, or modules the model lacks."""
        problem = rules.get("lora.target_modules")
        missing = self.missing_targets()
        if not problem and missing:
            problem = (
                f"not in this model: {', '.join(missing)} (it has {', '.join(self.model_modules)})"
            )
        return problem


def read_settings(path: str) -> RunConfig | str:
    """The settings in a TOML file for the form, or what is wrong with the file in one line."""
    try:
        return RunConfig.load(Path(path).expanduser())
    except ConfigError as exc:
        return "; ".join(f"{k}: {v}" for k, v in exc.problems.items())
    except UserError as exc:
        return exc.one_line()


def save_problem(path: str) -> str | None:
    """Why the settings cannot be saved to `path` (its folder does not exist), or None."""
    parent = Path(path).expanduser().parent
    return None if parent.is_dir() else f"no such folder: {parent}"


def field_problems(exc: UserError) -> dict[str, str]:
    """A refused run's problems by setting path (one, or a ConfigError's every one)."""
    if isinstance(exc, ConfigError):
        return dict(exc.problems)
    return {exc.field: exc.message + (f" ({exc.hint})" if exc.hint else "")}
