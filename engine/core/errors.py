"""Errors a person can act on: what is wrong, where, and how to fix it."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input; shown as one line (CLI exit code 2) or next to a form field."""

    def __init__(self, message: str, *, where: str = "", hint: str = "", field: str = "") -> None:
        self.message = message
        self.where = where
        self.hint = hint
        self.field = field
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """The whole error as one readable line."""
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class ConfigError(UserError):
    """One or more bad fields in a RunConfig; `problems` maps a field path to its message."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        first_field, first_message = next(iter(problems.items()))
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(first_message + more, where=first_field, field=first_field)
