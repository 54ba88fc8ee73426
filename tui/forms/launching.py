"""What Start, Queue and Estimate do, as plain functions for the setup screen's worker threads.

Each returns the message the screen shows, so the screen's workers only post it; none imports
Textual beyond the messages, and none lets an error escape (it becomes the message's error).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.config import RunConfig
from engine.core.errors import UserError
from tui.messages import PreflightDone, RunLaunched


def outcome(doing: str, job: Callable[[], RunLaunched]) -> RunLaunched:
    """What `job` returns, or its error as a RunLaunched ("cannot <doing>: ..." for OS errors)."""
    try:
        return job()
    except UserError as exc:
        return RunLaunched(error=exc)
    except OSError as exc:
        return RunLaunched(error=UserError(f"cannot {doing}: {exc}"))


def start_run(config: RunConfig, root: Path) -> RunLaunched:
    """Create the run directory and start the engine process for it."""
    from engine.runs.launch import launch

    return outcome("start the engine", lambda: RunLaunched(run_dir=launch(config, root)))


def queue_runs(
    root: Path, config: RunConfig, sweep: dict[str, list[Any]], entry: str
) -> RunLaunched:
    """Queue the run (every run of a sweep), or save an edited queued `entry` back; then start
    the first queued run when no engine is busy."""
    from engine.runs import queue

    def write() -> RunLaunched:
        if entry:
            queue.update(root, entry, config)
            text = f"saved the queued run {config.output.run_name or entry}"
        else:
            added = queue.add_sweep(root, config, sweep) if sweep else [queue.add(root, config)]
            text = f"queued {len(added)} run{'s' if len(added) > 1 else ''}"
        started = queue.start_next(root)
        if started is not None:
            text += f"; started {started.name}"
        return RunLaunched(queued=text)

    return outcome("queue", write)


def estimate(config: RunConfig, root: Path) -> PreflightDone:
    """`finetune-tui preflight` on the config in its own process (torch stays out of the UI)."""
    from engine.rundir.runs import list_runs

    if any(r.active for r in list_runs(root)):
        # Two trainings on the same cores slow each other badly and skew the estimate.
        return PreflightDone(error="a run is training now: estimate once it ends")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "preflight.toml"
        config.save(path)
        proc = subprocess.run(
            [sys.executable, "-m", "engine.cli", "preflight", "--config", str(path)],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
    if proc.returncode:
        error = (proc.stderr.strip().splitlines() or ["the estimate failed"])[-1]
        return PreflightDone(error=error.removeprefix("error: "))
    return PreflightDone(lines=proc.stdout.strip().splitlines())
