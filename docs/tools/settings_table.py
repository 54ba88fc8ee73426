"""Print the settings reference of docs/configuration.md: every RunConfig field, by section."""

from __future__ import annotations

import dataclasses

from engine.config import all_fields


def settings_table() -> str:
    """Markdown tables of every setting: flag, default, choices and help, one table per section."""
    out: list[str] = []
    section_now = ""
    for section, f in all_fields():
        if section != section_now:
            section_now = section
            out += ["", f"### [{section}]", "", "| flag | default | help |", "|---|---|---|"]
        missing = f.default is dataclasses.MISSING
        default = f.default_factory() if missing else f.default  # type: ignore[misc]
        shown = (
            repr(default)
            if isinstance(default, str)
            else str(default).lower()
            if isinstance(default, bool)
            else str(default)
        )
        choices = f.metadata.get("choices")
        extra = f" (one of: {', '.join(map(str, choices))})" if choices else ""
        text = (f.metadata.get("help", "") + extra).replace("|", "\\|")
        out.append(f"| `--{f.name}` | `{shown}` | {text} |")
    return "\n".join(out).lstrip("\n")


if __name__ == "__main__":
    print(settings_table())
