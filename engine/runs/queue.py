"""The run queue: configs waiting in the runs root, started one at a time with no UI needed.

Each entry is a small JSON file in `ROOT/queue/` (written atomically) holding a RunConfig, its
place in the line and an optional sweep id. When an engine ends (finished, stopped or failed),
`engine.runs.worker` calls `start_next`, which starts the first entry unless another engine is alive.
Two processes never start the same entry: an entry is claimed by renaming it (atomic), and the
check-then-start is done under a lock file.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import RunConfig, field_path
from engine.core.errors import UserError

QUEUE_DIR = "queue"
CLAIMED_DIR = ".claimed"
LOCK_FILE = ".lock"
# Short names for run names of a sweep (lr3e-04-r8 is easier to read than learning_rate...).
SHORT = {
    "learning_rate": "lr",
    "lora_r": "r",
    "lora_alpha": "alpha",
    "batch_size": "bs",
    "epochs": "ep",
    "lora_dropout": "drop",
    "weight_decay": "wd",
    "warmup_ratio": "warm",
    "grad_accum": "ga",
    "max_length": "len",
}


@dataclass
class QueueEntry:
    """One queued run: its config, place in the line and (for a sweep) the sweep it belongs to."""

    entry_id: str
    order: float
    config: RunConfig
    sweep_id: str = ""
    added: float = 0.0
    path: Path | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """What the run will be called (its run_name, or model and data)."""
        cfg = self.config
        if cfg.output.run_name:
            return cfg.output.run_name
        parts = (cfg.model.model_name or "default", cfg.data.data_file_path or "example")
        return "-".join(Path(p).name.split(".")[0] for p in parts)

    def to_json(self) -> str:
        """The entry file's text."""
        return json.dumps(
            {
                "id": self.entry_id,
                "order": self.order,
                "sweep_id": self.sweep_id,
                "added": self.added,
                "config": self.config.to_dict(),
            },
            indent=1,
        )


def queue_dir(root: Path) -> Path:
    """The queue folder of a runs root."""
    return Path(root) / QUEUE_DIR


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read(path: Path) -> QueueEntry | None:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        cfg = RunConfig.from_dict(raw["config"], source=str(path))
        return QueueEntry(
            entry_id=str(raw["id"]),
            order=float(raw["order"]),
            config=cfg,
            sweep_id=str(raw.get("sweep_id", "")),
            added=float(raw.get("added", 0.0)),
            path=path,
        )
    except (OSError, ValueError, KeyError, TypeError, UserError):
        return None  # claimed meanwhile, half-written by hand, or from a newer version


def entries(root: Path) -> list[QueueEntry]:
    """The queued runs, first to start first."""
    folder = queue_dir(root)
    if not folder.is_dir():
        return []
    found = [e for p in folder.glob("*.json") if (e := _read(p)) is not None]
    return sorted(found, key=lambda e: (e.order, e.added, e.entry_id))


def add(root: Path, config: RunConfig, *, sweep_id: str = "") -> QueueEntry:
    """Append a (validated) config to the queue."""
    from engine.models.checks import check_model_task

    config.validate()
    check_model_task(config.model.model_name, config.task)  # refused now, not when it starts
    config = config.copy()
    config.anchor_paths()  # the entry starts later, from another working folder
    folder = queue_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    current = entries(root)
    entry = QueueEntry(
        entry_id=secrets.token_hex(3),
        order=(current[-1].order + 1.0) if current else 1.0,
        config=config.copy(),
        sweep_id=sweep_id,
        added=time.time(),
    )
    entry.path = folder / f"{entry.entry_id}.json"
    _write_atomic(entry.path, entry.to_json())
    return entry


def find(root: Path, ref: str) -> QueueEntry:
    """An entry by id (or unique id prefix) or by its 1-based place in the line."""
    current = entries(root)
    if not current:
        raise UserError("the queue is empty", hint="add runs with 'finetune-tui queue add ...'")
    if ref.isdigit() and len(ref) < 4:  # a place in the line, never an id prefix
        if 1 <= int(ref) <= len(current):
            return current[int(ref) - 1]
        raise UserError(
            f"no place {ref} in the queue (it holds {len(current)})",
            hint="'finetune-tui queue' lists them: give the number or the id",
        )
    matches = [e for e in current if e.entry_id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    raise UserError(
        f"no queued run '{ref}'" if not matches else f"'{ref}' matches {len(matches)} queued runs",
        hint="'finetune-tui queue' lists them: give the number or the id",
    )


def remove(root: Path, ref: str) -> QueueEntry:
    """Take an entry out of the queue (cancel it)."""
    entry = find(root, ref)
    assert entry.path is not None
    try:
        entry.path.unlink()
    except FileNotFoundError:
        raise UserError("that run has just started", where=entry.entry_id) from None
    return entry


def update(root: Path, ref: str, config: RunConfig) -> QueueEntry:
    """Replace a queued entry's config (edit it), keeping its place."""
    config.validate()
    entry = find(root, ref)
    assert entry.path is not None
    if not entry.path.exists():
        raise UserError("that run has just started", where=entry.entry_id)
    entry.config = config.copy()
    _write_atomic(entry.path, entry.to_json())
    return entry


def move(root: Path, ref: str, delta: int) -> QueueEntry:
    """Move an entry `delta` places earlier (negative) or later (positive) in the line."""
    current = entries(root)
    entry = find(root, ref)
    i = next(n for n, e in enumerate(current) if e.entry_id == entry.entry_id)
    j = max(0, min(len(current) - 1, i + delta))
    if i == j:
        return entry
    current.insert(j, current.pop(i))
    for n, e in enumerate(current, start=1):
        if e.order != float(n) and e.path is not None and e.path.exists():
            e.order = float(n)
            _write_atomic(e.path, e.to_json())
    return entry


# -- starting ---------------------------------------------------------------------------------------
@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """An exclusive lock on the queue (held while deciding whether to start and starting)."""
    folder = queue_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+b") as fh:
        try:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows: the rename claim still guards entries
            pass
        yield


def busy_run(root: Path, exclude: Path | None = None) -> Path | None:
    """A run whose engine is alive (or being launched) under the root, other than `exclude`."""
    from engine.rundir.runs import CONFIG_FILE, STATUS_FILE, engine_alive

    if not Path(root).is_dir():
        return None
    skip = Path(exclude).resolve() if exclude else None
    for run_dir in Path(root).iterdir():
        if run_dir.name == QUEUE_DIR or not (run_dir / CONFIG_FILE).is_file():
            continue
        if skip is not None and run_dir.resolve() == skip:
            continue
        if engine_alive(run_dir):
            return run_dir
        if not (run_dir / STATUS_FILE).exists() and time.time() - run_dir.stat().st_mtime < 10:
            return run_dir  # created a moment ago; its launcher writes the status next
    return None


def claim(root: Path, entry: QueueEntry) -> bool:
    """Take an entry out of the line for starting it (False when another process got it)."""
    assert entry.path is not None
    claimed = queue_dir(root) / CLAIMED_DIR
    claimed.mkdir(exist_ok=True)
    try:
        os.rename(entry.path, claimed / entry.path.name)
    except FileNotFoundError:
        return False
    return True


def start_next(root: Path, exclude: Path | None = None) -> Path | None:
    """Start the first queued run unless an engine is alive; return its run dir (or None)."""
    from engine.runs.launch import launch

    root = Path(root)
    if not entries(root):
        return None
    with _locked(root):
        if busy_run(root, exclude) is not None:
            return None
        for entry in entries(root):
            if not claim(root, entry):
                continue
            cfg = entry.config.copy()
            cfg.output.sweep_id = entry.sweep_id or cfg.output.sweep_id
            try:
                run_dir = launch(cfg, root)
            except (UserError, OSError) as exc:
                _note_failure(root, entry, exc)
                continue
            finally:
                (queue_dir(root) / CLAIMED_DIR / f"{entry.entry_id}.json").unlink(missing_ok=True)
            return run_dir
    return None


def _note_failure(root: Path, entry: QueueEntry, exc: Exception) -> None:
    """Keep a line about a queued run that could not start (the queue goes on with the next)."""
    text = exc.one_line() if isinstance(exc, UserError) else str(exc)
    with open(queue_dir(root) / "failures.log", "a", encoding="utf-8") as fh:
        fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {entry.entry_id} {entry.name}: {text}\n")


def after_run(run_dir: Path) -> Path | None:
    """The hook an engine calls when its run ends: start the next queued run, if any."""
    root = Path(run_dir).parent
    try:
        return start_next(root, exclude=run_dir)
    except Exception:  # noqa: BLE001 - a queue problem must never turn a run's outcome into a crash
        import traceback

        try:
            with open(queue_dir(root) / "failures.log", "a", encoding="utf-8") as fh:
                fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} after {Path(run_dir).name}:\n")
                fh.write(traceback.format_exc())
        except OSError:
            pass
        return None


# -- sweeps -----------------------------------------------------------------------------------------
def parse_values(name: str, text: str) -> list[Any]:
    """The values of a sweep setting, 'lr=3e-4,1e-3' style text after the '=' (checked)."""
    section, fname = field_path(name)
    probe = RunConfig()
    values = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        probe.set(f"{section}.{fname}", part)
        value = probe.get(f"{section}.{fname}")
        if value not in values:
            values.append(value)
    if not values:
        raise UserError(f"no values to sweep for {fname}", hint="e.g. learning_rate=3e-4,1e-3")
    return values


def grid(base: RunConfig, sweep: dict[str, list[Any]]) -> list[RunConfig]:
    """Every combination of the swept values on top of `base`, each with a readable run name."""
    names = list(sweep)
    configs = []
    for combo in itertools.product(*(sweep[n] for n in names)):
        cfg = base.copy()
        label = []
        for name, value in zip(names, combo, strict=True):
            cfg.set(name, value)
            fname = field_path(name)[1]
            label.append(f"{SHORT.get(fname, fname)}{short_value(value)}")
        prefix = [base.output.run_name] if base.output.run_name else []
        cfg.output.run_name = "-".join(prefix + label)
        configs.append(cfg.validate())
    return configs


def short_value(value: Any) -> str:
    """A setting's value, short: 0.0003 -> 3e-04, 3.0 -> 3."""
    if isinstance(value, float):
        text = f"{value:g}"
        if "e" not in text and 0 < abs(value) < 0.01:  # 0.0003 -> 3e-04
            text = f"{value:.0e}" if float(f"{value:.0e}") == value else f"{value:.1e}"
        return text
    return str(value)


def add_sweep(root: Path, base: RunConfig, sweep: dict[str, list[Any]]) -> list[QueueEntry]:
    """Queue the grid of a sweep under one new sweep id."""
    configs = grid(base, sweep)
    sweep_id = time.strftime("sweep-%Y%m%d-%H%M%S-") + secrets.token_hex(2)
    return [add(root, cfg, sweep_id=sweep_id) for cfg in configs]
