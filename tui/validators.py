"""Textual validators built from RunConfig's own checks, so the rules live in one place."""

from __future__ import annotations

from collections.abc import Callable

from textual.validation import ValidationResult, Validator

from engine.config import RunConfig, field_path
from engine.core.errors import ConfigError
from tui.forms.field_text import sweep_parts, sweepable  # noqa: F401 - used by the form


def field_problem(config: RunConfig, name: str, text: str) -> str | None:
    """The message for `text` in field `name` given the rest of `config` (None when fine).

    `config` is changed: the field is set to the value when it converts. A number field may
    hold several values (a sweep): each is checked.
    """
    parts = sweep_parts(name, text)
    if parts:
        for part in parts:
            problem = field_problem(config, name, part)
            if problem:
                return f"{part}: {problem}"
        field_problem(config, name, parts[0])
        return None
    section, fname = field_path(name)
    try:
        config.set(name, text)
    except ConfigError as exc:
        return next(iter(exc.problems.values()))
    return config.problems().get(f"{section}.{fname}")


class ConfigFieldValidator(Validator):
    """Checks one config field: its type (via `RunConfig.set`) and its rules (`problems()`)."""

    def __init__(self, name: str, current: Callable[[], RunConfig]) -> None:
        super().__init__()
        self.name = name
        self.current = current

    def validate(self, value: str) -> ValidationResult:
        """Fail with RunConfig's own message, or succeed."""
        problem = field_problem(self.current(), self.name, value)
        return self.failure(problem, value) if problem else self.success()
