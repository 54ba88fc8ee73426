"""A run's newest weights in the TUI: loaded in a worker thread once, again only when they change."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

Loaded = TypeVar("Loaded")
_default_threads: int | None = None


def training_engine_alive(root: Path) -> bool:
    """True when any run under `root` has a live engine (reads the disk: call in a worker)."""
    from engine.rundir.runs import STATUS_FILE, engine_alive

    if not root.is_dir():
        return False
    return any(engine_alive(p) for p in root.iterdir() if (p / STATUS_FILE).is_file())


def set_threads(busy: bool) -> int:
    """Cap torch to 1 thread while an engine trains (no oversubscription), else the default.

    Torch's intra-op thread count is per calling thread: call this in the thread that works.
    """
    global _default_threads
    import torch

    if _default_threads is None:
        _default_threads = torch.get_num_threads()
    wanted = 1 if busy else _default_threads
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    return wanted


def threads_beside_training(run_dir: Path) -> int:
    """Set and return this thread's torch threads: 1 while any engine trains, else the default."""
    return set_threads(training_engine_alive(run_dir.parent))


def describe(weights: Path, run_dir: Path) -> str:
    """Where the weights come from, in words."""
    if weights.parent.name == "checkpoints":
        return f"newest checkpoint ({weights.name}) of a run still training"
    return f"final adapter in {weights}" if weights.parent != run_dir else "final adapter"


class NewestWeights(Generic[Loaded]):
    """The model built by `load(weights, threads)` from a run's newest weights, cached.

    It is built again when the weights change (a new checkpoint of a run still training) or the
    thread cap does; hold `lock` around `get()` and the work done with what it returns.
    """

    def __init__(self, run_dir: Path, load: Callable[[Path, int], Loaded]) -> None:
        self.run_dir = Path(run_dir)
        self.lock = threading.Lock()
        self.threads_used = 0
        self._load = load
        self._loaded: Loaded | None = None
        self._key: tuple[Path, float, int] | None = None

    def get(self) -> tuple[Loaded, Path, int]:
        """The model for the newest weights, the weights folder and the threads it runs on."""
        from engine.rundir.weights import find_weights

        weights = find_weights(self.run_dir)
        threads = threads_beside_training(self.run_dir)
        self.threads_used = threads
        stamp = max((p.stat().st_mtime for p in weights.iterdir()), default=0.0)
        key = (weights, stamp, threads)
        if self._loaded is None or self._key != key:
            self._loaded = self._load(weights, threads)
            self._key = key
        return self._loaded, weights, threads
