"""Notice runs that end (and a queue that runs dry) so the app can ring: pure logic, no widgets."""

from __future__ import annotations

from pathlib import Path

from engine.config import RunConfig
from engine.core.errors import UserError
from engine.rundir.runs import CONFIG_FILE, engine_alive, run_info


class EndingWatcher:
    """Remembers which runs had a live engine; `poll` reports the ones whose engine has ended.

    Only runs whose config says `output.notify = "bell"` or `"osc9"` are reported (off by
    default). A run is reported once, with the queue's end when nothing is left to start.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.alive: set[Path] = set()
        self.primed = False

    def poll(self) -> list[tuple[str, str]]:
        """(kind, text) for every notifying run that ended since the last poll."""
        from engine.runs.queue import busy_run, entries

        if not self.root.is_dir():
            return []
        now_alive = {
            p for p in self.root.iterdir() if (p / CONFIG_FILE).is_file() and engine_alive(p)
        }
        ended = self.alive - now_alive if self.primed else set()
        self.alive, self.primed = now_alive, True
        out = []
        for run_dir in sorted(ended):
            try:
                kind = RunConfig.load(run_dir / CONFIG_FILE).output.notify
            except UserError:
                continue
            if kind == "off":
                continue
            text = f"{run_dir.name} {run_info(run_dir).state}"
            if not entries(self.root) and busy_run(self.root) is None:
                text += "; the queue is done"
            out.append((kind, text))
        return out
