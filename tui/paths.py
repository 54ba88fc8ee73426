"""Suggested output paths: under the home folder, never one that exists (no silent overwrite)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any


def free_path(path: Path) -> Path:
    """`path`, or `name-2`, `name-3`, ... beside it: the first that does not exist yet."""
    if not path.exists():
        return path
    stem, suffix = (
        (path.stem, path.suffix) if path.suffix in (".toml", ".json") else (path.name, "")
    )
    stem = re.sub(r"-\d+$", "", stem)  # x-2 is taken: x-3, not x-2-2
    for n in range(2, 1000):
        candidate = path.with_name(f"{stem}-{n}{suffix}")
        if not candidate.exists():
            return candidate
    return path


def display_path(path: Path) -> str:
    """A path as the user types it: `~/...` under the home folder."""
    home = Path.home()
    try:
        return "~/" + str(path.relative_to(home))
    except ValueError:
        return str(path)


def in_use(path: Path) -> bool:
    """True when writing to `path` would replace something (a file, or a folder with files)."""
    if path.is_dir():
        return any(path.iterdir())
    return path.exists()


def confirm_overwrite(
    app: Any, path: Path, then: Callable[[bool | None], None], folder: bool = False
) -> None:
    """Call `then(True)` at once when `path` is free; otherwise ask first.

    With `folder`, only a folder holding files is asked about (a file in the way is for the
    writer to refuse with its own message)."""
    if not in_use(path) or (folder and not path.is_dir()):
        then(True)
        return
    from tui.widgets.dialogs import Confirm

    what = "folder" if path.is_dir() else "file"
    app.push_screen(
        Confirm(f"{path} exists.\nReplace this {what}?", yes="Replace", no="Keep it"), then
    )
