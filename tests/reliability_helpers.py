"""Helpers of the reliability tests: a quick tiny run, events by type, leftovers, ENOSPC."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

from engine.config import RunConfig
from engine.rundir.events import read_events


def tiny_cfg(model: Path, **training: object) -> RunConfig:
    """A quick tiny run of the bundled example data."""
    cfg = RunConfig()
    cfg.model.model_name = str(model)
    cfg.training.max_steps = 3
    cfg.training.batch_size = 8
    cfg.training.logging_steps = 1
    cfg.training.eval_strategy = "no"
    cfg.training.save_strategy = "no"
    cfg.training.checkpoint_minutes = 0
    cfg.training.threads = 1
    for key, value in training.items():
        setattr(cfg.training, key, value)
    return cfg


def typed(run_dir: Path, cls: type) -> list:
    """The run's events of one type."""
    return [e for e in read_events(run_dir) if isinstance(e, cls)]


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders left anywhere under `folder`."""
    return [str(p) for p in folder.rglob("*") if ".tmp" in p.name or p.name.endswith(".tmp")]


def enospc(filename: str = "") -> OSError:
    """The error a full disk raises."""
    return OSError(errno.ENOSPC, "No space left on device", filename or None)


def mount_tmpfs(folder: Path, size: str, *options: str) -> bool:
    """Mount a tmpfs of `size` on `folder`; False where this machine does not allow it."""
    folder.mkdir(parents=True, exist_ok=True)
    opts = ",".join([f"size={size}", *options])
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0
