"""Textual validators built from RunConfig's own checks, so the rules live in one place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields

from textual.validation import ValidationResult, Validator

from engine.config import SECTIONS, RunConfig, field_path
from engine.core.errors import ConfigError


def sweepable(name: str) -> bool:
    """True for number settings, which take several comma-separated values (a sweep)."""
    section, fname = field_path(name)
    fdef = next(f for f in fields(SECTIONS[section]) if f.name == fname)
    kind = fdef.type if isinstance(fdef.type, str) else fdef.type.__name__
    return kind in ("int", "float")


def sweep_parts(name: str, text: str) -> list[str]:
    """The values of a sweep typed into a number field ('3e-4, 1e-3' -> two); [] when one."""
    if "," not in str(text) or not sweepable(name):
        return []
    return [p.strip() for p in str(text).split(",") if p.strip()]


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
