"""Write files whole or not at all (temp name + rename), and recognise a full disk."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(exc: BaseException) -> bool:
    """True for an OSError saying the disk (or the user's quota) is full."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL


def temp_name(path: Path) -> Path:
    """A hidden temporary name beside `path`, unique to this process."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace `path` with `data` in one step: readers see the old or the new file, never half.

    The temporary file is removed when the write fails (a full disk leaves nothing behind).
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def overwrite_in_place(path: str | Path, data: bytes) -> None:
    """Rewrite a small file in its own blocks: the last resort when a full disk refuses a temp file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def folder_size(path: Path) -> int:
    """Bytes in the files under `path` (0 when it is missing)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def free_bytes(path: Path) -> int | None:
    """Free space on the file system holding `path` (or its nearest existing parent)."""
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def mb(n: int) -> str:
    """A byte count in MB (one decimal below 10 MB)."""
    value = n / 1e6
    return f"{value:.1f} MB" if value < 10 else f"{value:.0f} MB"
