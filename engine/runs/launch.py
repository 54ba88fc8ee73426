"""Start the engine as its own process (own session: survives SIGHUP), stop it, resume it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from engine.config import RunConfig
from engine.rundir.runs import (
    CONFIG_FILE,
    LOG_FILE,
    STOP_FILE,
    check_resumable,
    engine_alive,
    new_run_dir,
    write_status,
)


def spawn_engine(run_dir: Path, *, resume: bool = False) -> int:
    """Start `python -m engine.runs.worker RUN_DIR` detached from this terminal; returns its pid.

    With several processes (nproc x nnodes > 1) the engine is `engine.runs.supervisor`, which starts
    torchrun and reports a process that dies.
    """
    import psutil

    from engine.scaleout.torchrun import world_of

    entry = (
        "engine.runs.supervisor"
        if world_of(RunConfig.load(run_dir / CONFIG_FILE)) > 1
        else "engine.runs.worker"
    )
    cmd = [sys.executable, "-m", entry, str(run_dir)] + (["--resume"] if resume else [])
    env = dict(os.environ)
    # Make `engine` importable in the child even when running from a source checkout.
    root = str(Path(__file__).resolve().parents[2])  # the folder that holds `engine`
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(run_dir / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
            cwd=str(run_dir),
        )
    keep_app_priority(proc.pid)
    try:
        start = psutil.Process(proc.pid).create_time()
    except psutil.NoSuchProcess:
        start = None
    write_status(run_dir, pid=proc.pid, pid_start=start, state="starting", launched_at=time.time())
    return proc.pid


def keep_app_priority(pid: int) -> None:
    """Give the engine the niceness the app was started with, not the launching thread's.

    Linux nice is per thread and a child inherits its creator thread's; the app's main thread
    (whose id is the pid) keeps the niceness the user started the app with.
    """
    import contextlib

    with contextlib.suppress(AttributeError, OSError):  # not Linux, gone, or not allowed
        wanted = os.getpriority(os.PRIO_PROCESS, os.getpid())
        if os.getpriority(os.PRIO_PROCESS, pid) != wanted:
            os.setpriority(os.PRIO_PROCESS, pid, wanted)


def launch(config: RunConfig, root: Path) -> Path:
    """Create a run directory for `config` and start its engine in the background.

    The entry point of the TUI and of anything that queues runs: the same pre-run checks as
    the CLI (engine.models.checks.check_run) refuse bad outputs before a run directory is made.
    """
    from engine.models.checks import check_run

    config.validate()
    check_run(config)
    run_dir = new_run_dir(config, root)
    spawn_engine(run_dir)
    return run_dir


def request_stop(run_dir: Path) -> bool:
    """Ask a running engine to stop gracefully (finish the step, save). False if not running."""
    if not engine_alive(run_dir):
        return False
    (run_dir / STOP_FILE).write_text(str(time.time()), encoding="utf-8")
    return True


def resume(run_dir: Path) -> int:
    """Continue a stopped, failed or crashed run from its last checkpoint in a new engine.

    Refuses a live or finished run and an unreadable config here, so the caller hears why;
    the engine's lock still decides if two resumes race.
    """
    check_resume(run_dir)
    return spawn_engine(run_dir, resume=True)


def check_resume(run_dir: Path) -> None:
    """Everything that refuses a resume, checked before any engine starts or any file changes."""
    from engine.models.checks import check_run

    check_resumable(run_dir)
    check_run(RunConfig.load(run_dir / CONFIG_FILE).validate(), run_dir)
