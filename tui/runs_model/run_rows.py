"""The run list's data: a scan of the runs root that re-reads only what changed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import RunConfig
from engine.core.errors import UserError
from engine.rundir.runs import CHECKPOINTS_DIR, CONFIG_FILE, STATUS_FILE, RunInfo, run_info
from engine.runs.queue import QueueEntry, entries

QUEUED_PREFIX = "queued-"


@dataclass
class RunRow:
    """A run as the list shows it: its summary and whether it has weights to try or export.

    A queued run (not started yet) is a row too: its `entry` is set and its state is `queued`.
    """

    info: RunInfo
    has_weights: bool
    config: RunConfig | None = None
    entry: QueueEntry | None = None
    place: int = 0

    @property
    def queued(self) -> bool:
        """True for a run waiting in the queue."""
        return self.entry is not None

    @property
    def sweep_id(self) -> str:
        """The sweep this run belongs to ('' when none)."""
        if self.entry is not None and self.entry.sweep_id:
            return self.entry.sweep_id
        return self.config.output.sweep_id if self.config is not None else ""

    @property
    def run_id(self) -> str:
        """The run's id (its directory name)."""
        return self.info.run_id


def read_config(run_dir: Path) -> RunConfig | None:
    """A run's config, or None when unreadable."""
    try:
        return RunConfig.load(run_dir / CONFIG_FILE)
    except (UserError, OSError):
        return None


def queued_rows(root: Path) -> list[RunRow]:
    """The queue as rows, first to start first (reads the disk: call in a worker)."""
    rows = []
    for n, entry in enumerate(entries(root), start=1):
        assert entry.path is not None
        info = RunInfo(
            run_id=QUEUED_PREFIX + entry.entry_id,
            path=entry.path,
            state="queued",
            model=entry.config.model.model_name or "default",
            data=Path(entry.config.data.data_file_path).name
            if entry.config.data.data_file_path
            else "example",
            metric_name=entry.config.best_metric,
        )
        rows.append(RunRow(info, False, entry.config, entry, n))
    return rows


def has_weights(run_dir: Path) -> bool:
    """True when the run has a final adapter or a checkpoint (reads the disk: call in a worker)."""
    from engine.rundir.weights import find_weights

    try:
        find_weights(run_dir)
    except (UserError, OSError, ValueError):
        return False
    return True


class RunScanner:
    """Scans the runs root; re-reads a run only when its files changed or its engine is live."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, tuple[tuple[Any, ...], RunRow]] = {}

    @staticmethod
    def _signature(run_dir: Path) -> tuple[Any, ...]:
        sig: list[Any] = []
        for name in ("events.jsonl", STATUS_FILE, CHECKPOINTS_DIR, "adapter", CONFIG_FILE):
            try:
                st = (run_dir / name).stat()
                sig.append((st.st_size, st.st_mtime_ns))
            except OSError:
                sig.append(None)
        return tuple(sig)

    def scan(self) -> list[RunRow]:
        """Queued runs (next first), then all runs, newest first (reads the disk: in a worker)."""
        if not self.root.is_dir():
            return []
        queued = queued_rows(self.root)
        dirs = sorted(
            (p for p in self.root.iterdir() if (p / CONFIG_FILE).is_file()),
            key=lambda p: p.name,
            reverse=True,
        )
        rows: list[RunRow] = []
        for run_dir in dirs:
            sig = self._signature(run_dir)
            cached = self._cache.get(run_dir.name)
            if cached and cached[0] == sig and not cached[1].info.active:
                rows.append(cached[1])
                continue
            try:
                row = RunRow(run_info(run_dir), has_weights(run_dir), read_config(run_dir))
            except OSError:  # deleted while we looked
                continue
            self._cache[run_dir.name] = (sig, row)
            rows.append(row)
        names = {r.run_id for r in rows}
        for gone in set(self._cache) - names:
            del self._cache[gone]
        return queued + rows
