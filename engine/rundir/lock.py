"""One engine per run directory: an flock the engine holds for its whole life."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from engine.core.errors import UserError

LOCK_FILE = "engine.lock"


class RunLock:
    """An exclusive lock on a run directory, held by its engine for the engine's whole life.

    flock on `engine.lock`: the kernel drops it when the process dies (kill -9 included), so a
    crashed run never stays locked, and two engines can never both hold it (no check-then-act).
    """

    def __init__(self, run_dir: Path, fd: int) -> None:
        self.run_dir = run_dir
        self.fd = fd

    def release(self) -> None:
        """Let go of the lock (the engine is done with the run)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def acquire_run_lock(run_dir: Path, wait_s: float = 2.0) -> RunLock:
    """Take the run's lock, or raise a UserError when another engine holds it.

    Waits up to `wait_s` because readers probe the lock for a moment (`lock_held`).
    """
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except FileNotFoundError:
        raise UserError("the run directory is gone", where=str(run_dir)) from None
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return RunLock(run_dir, fd)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
        if time.monotonic() >= deadline:
            os.close(fd)
            raise UserError(
                "another engine is already working on this run",
                where=run_dir.name,
                hint="attach to it, or wait until it ends",
            )
        time.sleep(0.05)


def lock_held(run_dir: Path) -> bool:
    """True when an engine holds the run's lock (a probe that holds it for an instant)."""
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing releases our probe
    return False
