"""Out of disk space: keep room to say so, recognise it however it surfaces, and clean up."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from engine.core.atomic import free_bytes, is_disk_full, mb
from engine.rundir.events import Failed

RESERVE_FILE = ".reserve"
RESERVE_BYTES = 256 * 1024
# How the libraries report a full disk when they do not raise OSError(ENOSPC) themselves.
FULL_TEXTS = ("no space left on device", "storagefull", "os error 28", "disk quota exceeded")
# torch.save's zip writer reports a short write only as one of these; a near-empty disk says why.
SHORT_WRITE_TEXTS = ("write failed", "unexpected pos")


class Reserve:
    """A small file the engine deletes when the disk fills, to make room for its last words."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / RESERVE_FILE

    def make(self) -> None:
        """Claim the space (real blocks, so a full disk cannot take them)."""
        with open(self.path, "wb") as fh:
            fh.write(b"\0" * RESERVE_BYTES)

    def release(self) -> None:
        """Give the space back."""
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def is_out_of_space(exc: BaseException, folder: Path) -> bool:
    """True when `exc` (or what caused it) is a full disk, however the library wrapped it."""
    for e in _chain(exc):
        if is_disk_full(e):
            return True
        text = str(e).lower()
        if any(t in text for t in FULL_TEXTS):
            return True
        short_write = any(t in text for t in SHORT_WRITE_TEXTS)
        if short_write and (free_bytes(folder) or 0) < 1_000_000:
            return True
    return False


def _failed_path(exc: BaseException, run_dir: Path) -> Path:
    """The folder a failed write was for (the run directory when the error does not say)."""
    for e in _chain(exc):
        name = getattr(e, "filename", None)
        if name:
            path = Path(os.fsdecode(name))
            return path.parent if not path.is_dir() else path
    return run_dir


def checkpoint_bytes(run_dir: Path) -> int:
    """The size of the newest complete checkpoint (what the next one needs), 0 when none."""
    from engine.core.atomic import folder_size

    folder = run_dir / "checkpoints"
    done = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    newest = max(done, key=lambda p: p.stat().st_mtime, default=None)
    return folder_size(newest) if newest else 0


def disk_full_failure(exc: BaseException, run_dir: Path) -> Failed | None:
    """The `failed` event for a full disk (which folder, how much space), or None if not one."""
    where = _failed_path(exc, run_dir)
    if not is_out_of_space(exc, where):
        return None
    free = free_bytes(where)
    need = checkpoint_bytes(run_dir)
    room = f"{mb(free)} free" if free is not None else "no space left"
    wanted = f"; a checkpoint of this run needs about {mb(need)}" if need else ""
    return Failed(
        message=f"out of disk space in {where} ({room}{wanted})",
        where=str(where),
        hint=(
            "free some space there, or use a runs folder on a bigger disk "
            "(--runs-root / FINETUNE_TUI_RUNS); resume continues from the last checkpoint"
        ),
        user_error=True,
    )


def _complete(checkpoint: Path) -> bool:
    """A checkpoint whose trainer state (written last) is whole."""
    import json

    try:
        return isinstance(json.loads((checkpoint / "trainer_state.json").read_text()), dict)
    except (OSError, ValueError):
        return False


def drop_incomplete_checkpoints(run_dir: Path) -> None:
    """Delete checkpoint folders the full disk cut short (the trainer state is written last)."""
    for p in (run_dir / "checkpoints").glob("checkpoint-*"):
        if not _complete(p):
            shutil.rmtree(p, ignore_errors=True)
    for p in (run_dir / "checkpoints").glob("tmp-checkpoint-*"):
        shutil.rmtree(p, ignore_errors=True)
