"""The run list's data: a scan of the runs root that re-reads only what changed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.runs import CHECKPOINTS_DIR, CONFIG_FILE, STATUS_FILE, RunInfo, run_info


@dataclass
class RunRow:
    """A run as the list shows it: its summary and whether it has weights to try or export."""

    info: RunInfo
    has_weights: bool

    @property
    def run_id(self) -> str:
        """The run's id (its directory name)."""
        return self.info.run_id


def has_weights(run_dir: Path) -> bool:
    """True when the run has a final adapter or a checkpoint (reads the disk: call in a worker)."""
    from engine.predict import find_weights

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
        """All runs, newest first (reads the disk: call in a worker)."""
        if not self.root.is_dir():
            return []
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
                row = RunRow(run_info(run_dir), has_weights(run_dir))
            except OSError:  # deleted while we looked
                continue
            self._cache[run_dir.name] = (sig, row)
            rows.append(row)
        names = {r.run_id for r in rows}
        for gone in set(self._cache) - names:
            del self._cache[gone]
        return rows
