"""Flat access to the settings: a field by name, every field in order, text to the field's type."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import fields
from typing import Any

from engine.config.sections import SECTIONS
from engine.core.errors import ConfigError


def field_path(name: str) -> tuple[str, str]:
    """Resolve 'lora_r', 'lora-r' or 'lora.lora_r' to (section, field name)."""
    name = name.replace("-", "_")
    if "." in name:
        section, fname = name.split(".", 1)
        if section in SECTIONS and fname in {f.name for f in fields(SECTIONS[section])}:
            return section, fname
    for section, cls in SECTIONS.items():
        if name in {f.name for f in fields(cls)}:
            return section, name
    raise ConfigError({name: f"unknown setting '{name}'"})


def all_fields() -> list[tuple[str, dataclasses.Field]]:
    """Every (section, field) pair, in display order."""
    return [(section, f) for section, cls in SECTIONS.items() for f in fields(cls)]


def coerce(fdef: dataclasses.Field, value: Any) -> Any:
    """Convert text or a TOML value to the field's type; ValueError says what was expected."""
    kind = fdef.type if isinstance(fdef.type, str) else fdef.type.__name__
    name = fdef.name
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name} must be true or false (got '{value}')")
    if kind == "int":
        if isinstance(value, bool):
            raise ValueError(f"{name} must be a whole number (got {value})")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise ValueError(f"{name} must be a whole number (got '{value}')") from None
    if kind == "float":
        if isinstance(value, bool):
            raise ValueError(f"{name} must be a number (got {value})")
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ValueError(
                f"{name} must be a number such as 0.1 or 1e-3 (got '{value}')"
            ) from None
        if not math.isfinite(number):
            raise ValueError(f"{name} must be a finite number (got '{value}')")
        return number
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    choices = fdef.metadata.get("choices", ())
    if "true" in choices:  # a switch with an auto setting: old configs hold a TOML bool
        text = str(value).strip().lower()
        words = {"1": "true", "yes": "true", "on": "true", "0": "false", "no": "false"}
        return words.get(text, "false" if text == "off" else text)
    return str(value)
