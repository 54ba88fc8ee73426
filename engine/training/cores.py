"""Share the CPU between engines: a new engine takes its share of the cores, not all of them.

Two engines that each run a thread per core on the same cores spin against each other
(measured: each ~21x slower than alone on 2 cores). So an engine counts the threads of the
engines already running under the runs root (their `status.json`) and the machine's load from
other programs, takes its share, and says so in a `log` event. A running engine re-checks the other engines now and then
(`Rebalancer`) and gives cores back or takes them again as engines come and go.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class ThreadPlan:
    """How many threads to use and why (`note` is empty when the engine takes every core)."""

    threads: int
    cores: int
    others: int  # threads of other live engines
    note: str = ""


def plan_threads(
    requested: int, cores: int, other_threads: list[int], load: float, own: int = 0
) -> ThreadPlan:
    """Pure rule: our share of `cores` given other engines' threads and the load average.

    `load` counts every runnable thread on the machine; `own` is what this engine itself adds
    to it (0 before it starts). Load beyond the engines is other programs' work.
    """
    busy = sum(other_threads)
    if requested > 0:
        note = ""
        if busy + requested > cores:
            note = (
                f"threads={requested} as asked, but {len(other_threads)} other engine(s) use "
                f"{busy} of {cores} cores: expect every run to slow down a lot"
            )
        return ThreadPlan(requested, cores, busy, note)
    outside = max(0.0, load - busy - own)
    usable = max(1, int(cores - outside + 0.5))
    share = max(1, usable // (len(other_threads) + 1))
    threads = min(cores, share)
    note = ""
    if threads < cores:
        parts = []
        if other_threads:
            parts.append(f"{len(other_threads)} other engine(s) use {busy} thread(s)")
        if outside >= 0.5:
            parts.append(f"other programs keep {outside:.1f} core(s) busy")
        note = f"taking {threads} of {cores} cores: " + " and ".join(parts)
    return ThreadPlan(threads, cores, busy, note)


def other_engine_threads(root: Path, run_dir: Path) -> list[int]:
    """Threads of the live engines under `root`, other than the one of `run_dir`."""
    from engine.rundir.runs import STATUS_FILE, engine_alive, read_status, status_number

    found = []
    try:
        dirs = [p for p in root.iterdir() if p.is_dir() and p.resolve() != run_dir.resolve()]
    except OSError:
        return []
    for d in dirs:
        if not (d / STATUS_FILE).is_file():
            continue
        status = read_status(d)
        threads = int(status_number(status, "threads"))
        if threads > 0 and status.get("state") in ("starting", "running") and engine_alive(d):
            found.append(threads)
    return found


def cpu_readings() -> tuple[float | None, float | None]:
    """(cores busy over the next half second, the one-minute load average); None where unknown."""
    now = minute = None
    try:
        import psutil

        now = psutil.cpu_percent(interval=0.5) / 100 * (psutil.cpu_count() or 1)
    except Exception:  # pragma: no cover - no psutil data on this platform
        pass
    with contextlib.suppress(OSError):  # not on every platform
        minute = os.getloadavg()[0]
    return now, minute


def busy_cores(now: float | None, minute: float | None) -> float:
    """Cores other work keeps busy, as two clocks agree: the lower of the half-second sample and
    the one-minute load average (one alone when only one exists).

    Neither decides alone. The one-minute load average lags: a run that ended seconds ago (a
    test, the previous training) still holds it up and would halve a new run's threads. A
    half-second sample catches a burst (a compile, a page of the TUI) as if it would last.
    Work that shows in both is work that is there.
    """
    known = [x for x in (now, minute) if x is not None]
    return min(known) if known else 0.0


class _RootLock:
    """Serialises thread claims under one runs root, so two engines starting at once see each other.

    The lock is on the root folder itself: no file of ours appears among the runs.
    """

    def __init__(self, root: Path) -> None:
        self.path = root
        self.fd = -1

    def __enter__(self) -> _RootLock:
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError:
            if self.fd >= 0:
                os.close(self.fd)
            self.fd = -1  # an odd file system: share without the lock
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)


def claim_threads(requested: int, run_dir: Path) -> tuple[ThreadPlan, str]:
    """Decide this engine's threads and record them in its status, under the root's lock.

    Also settles how waiting OpenMP threads behave (engine.core.hardware.settle_wait_policy)
    from what other programs, not engines, do right now; returns the plan and that log line.
    """
    from engine.core.hardware import available_cores, set_engine_threads, settle_wait_policy
    from engine.rundir.runs import write_status

    root = run_dir.parent
    with _RootLock(root):
        others = other_engine_threads(root, run_dir)
        now, minute = cpu_readings()
        plan = plan_threads(requested, available_cores(), others, busy_cores(now, minute))
        write_status(run_dir, threads=plan.threads)
    set_engine_threads(plan.threads)
    # Other engines share the cores by plan (the Rebalancer); only other programs make spinning cost.
    wait_note = settle_wait_policy(max(0.0, (now or 0.0) - sum(others)))
    return plan, wait_note


def record_threads(run_dir: Path, threads: int) -> None:
    """Tell the other engines under the root that this one now runs `threads` threads."""
    from engine.rundir.runs import write_status

    with _RootLock(run_dir.parent):
        write_status(run_dir, threads=threads)


class Rebalancer:
    """Re-plans a running engine's threads every `every_s` seconds; returns a note on change."""

    def __init__(self, run_dir: Path, requested: int, threads: int, every_s: float = 20.0):
        self.run_dir = run_dir
        self.requested = requested
        self.threads = threads
        self.every_s = every_s
        self.last = time.monotonic()
        self.cap: int | None = None  # the measured best count (engine.training.thread_probe)
        self.paused = False  # while the thread probe sets the counts

    def settle(self, threads: int) -> None:
        """The probe chose `threads`: never go above it, and tell the other engines now."""
        self.paused = False
        self.cap = threads
        if threads != self.threads:
            self.threads = threads
            record_threads(self.run_dir, threads)

    def check(self) -> str:
        """Apply a new share when the other engines changed; the log line to write, or ''."""
        if self.requested > 0 or self.paused or time.monotonic() - self.last < self.every_s:
            return ""
        self.last = time.monotonic()
        from engine.core.hardware import available_cores
        from engine.rundir.runs import write_status

        root = self.run_dir.parent
        with _RootLock(root):
            others = other_engine_threads(root, self.run_dir)
            # Engines only: the load average lags by a minute and would make the count flap.
            plan = plan_threads(0, available_cores(), others, 0.0)
            if self.cap is not None and plan.threads > self.cap:
                plan = ThreadPlan(self.cap, plan.cores, plan.others, "")
            if plan.threads == self.threads:
                return ""
            write_status(self.run_dir, threads=plan.threads)
        import torch

        torch.set_num_threads(plan.threads)
        before, self.threads = self.threads, plan.threads
        why = plan.note or (
            f"the measured best count ({self.cap})" if self.cap else "no other engine is running"
        )
        return f"threads {before} -> {plan.threads}: {why}"
