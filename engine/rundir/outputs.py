"""Output folders: checked before a run starts, marked as ours, written by temp name + rename.

One function, `check_run_outputs`, is called by every entry point (CLI train, TUI launch and any
queue through `engine.runs.launch.launch`, and the engine itself before its first step), so no path
trains for an hour and then fails to save, or overwrites files the user had.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from engine.core.errors import UserError

MARKER = ".finetune-tui.json"
FIELD = "output.output_dir"


def read_marker(folder: Path) -> dict[str, Any] | None:
    """Our marker in an output folder (which run wrote it), or None when it is not ours."""
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_marker(folder: Path, run_dir: Path | None) -> None:
    """Mark `folder` as written by finetune-tui for the run in `run_dir`."""
    from engine.core.atomic import atomic_write_text

    data = {"tool": "finetune-tui", "run_dir": str(run_dir.resolve()) if run_dir else ""}
    atomic_write_text(folder / MARKER, json.dumps(data))


def _run_dir_holding(path: Path) -> Path | None:
    """The run directory that `path` is inside of (or is), if any."""
    for candidate in (path, *path.parents):
        if (candidate / "config.toml").is_file() and (
            (candidate / "events.jsonl").exists() or (candidate / "status.json").exists()
        ):
            return candidate
    return None


def _refuse(message: str, where: Path, hint: str) -> UserError:
    return UserError(message, where=str(where), hint=hint, field=FIELD)


def check_output_dir(
    out: str | Path, *, run_dir: Path | None = None, overwrite: bool = False, what: str = "output"
) -> Path:
    """Check an output folder before anything is trained or written; returns it resolved.

    Refused: a file; a folder we cannot create or write; the run directory itself or one of
    its parents; a non-empty folder without our marker (the user's own files) or another run's
    output, unless `overwrite`. A folder marked by this same run (a resume) is fine.
    """
    out = Path(out).expanduser().resolve()
    own = run_dir.resolve() if run_dir else None
    if own is not None and (out == own or out in own.parents):
        raise _refuse(
            f"the {what} folder would hold the run directory itself",
            out,
            "choose a separate folder, or leave output_dir empty",
        )
    if out.exists() and not out.is_dir():
        raise _refuse(
            f"the {what} folder is a file", out, "give a folder path (it is created if missing)"
        )
    holder = _run_dir_holding(out)
    if holder is not None and holder != own and not overwrite:
        raise _refuse(
            f"the {what} folder belongs to another run ({holder.name})",
            out,
            "choose a folder outside it, or add --overwrite to write there",
        )
    if out.is_dir():
        try:
            entries = [p.name for p in out.iterdir()]
        except OSError as exc:
            raise _refuse(
                f"cannot read the {what} folder ({exc.strerror})", out, "check it"
            ) from None
        if entries and not overwrite:
            marker = read_marker(out)
            if marker is None:
                shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
                raise _refuse(
                    f"the {what} folder is not empty and was not written by finetune-tui ({shown})",
                    out,
                    "choose a new or empty folder, or add --overwrite to write into it",
                )
            if marker.get("run_dir", "") != (str(own) if own else ""):
                raise _refuse(
                    f"the {what} folder holds another run's adapter",
                    out,
                    "choose a new folder, or add --overwrite to replace it",
                )
    _check_writable(out, what)
    return out


def _check_writable(out: Path, what: str) -> None:
    """Prove we can create files where `out` is (or will be), without leaving anything."""
    anchor = out
    while not anchor.exists():
        anchor = anchor.parent
    if not anchor.is_dir():
        raise _refuse(
            f"cannot create the {what} folder: {anchor} is a file", out, "choose another path"
        )
    try:
        probe = tempfile.mkdtemp(prefix=".finetune-tui-probe-", dir=anchor)
        os.rmdir(probe)
    except OSError as exc:
        raise _refuse(
            f"cannot write the {what} folder ({exc.strerror or exc})",
            out,
            "choose a folder you can write to",
        ) from None


def check_run_outputs(cfg: Any, run_dir: Path | None = None) -> None:
    """Every pre-run check of where a run writes; raises UserError (with a field) on the first."""
    if cfg.output.output_dir:
        check_output_dir(cfg.output.output_dir, run_dir=run_dir, overwrite=cfg.output.overwrite)


def staging_dir(out: Path) -> Path:
    """A fresh temporary folder beside `out` to write into before `commit_staged`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))


def commit_staged(staged: Path, out: Path, run_dir: Path | None) -> Path:
    """Move every file written in `staged` into `out` by rename, mark `out` ours, drop `staged`.

    Each file appears whole (rename on one file system); files of `out` we did not write stay.
    """
    out.mkdir(parents=True, exist_ok=True)
    for src in sorted(staged.rglob("*")):
        if src.is_dir():
            continue
        dest = out / src.relative_to(staged)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
    write_marker(out, run_dir)
    shutil.rmtree(staged, ignore_errors=True)
    return out


def _umask() -> int:
    """This process's umask, read without changing it where Linux shows it (thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def usual_file_modes(folder: Path) -> None:
    """Give the files the mode the user's umask gives new files (0644 under umask 022).

    safetensors writes its files through a private temporary file (mode 0600), so an adapter
    or merged model could not be read by another account, such as an Ollama service.
    """
    mask = _umask()
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o666 & ~mask)


def write_folder(out: Path, run_dir: Path | None, write: Any) -> Path:
    """Call `write(folder)` on a staging folder, then move its files into `out` (never half)."""
    staged = staging_dir(out)
    try:
        write(staged)
        usual_file_modes(staged)
        return commit_staged(staged, out, run_dir)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
