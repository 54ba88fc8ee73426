"""Run directories: where they live, the status file, and the run list (a scan of the root)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import RunConfig
from engine.core.errors import UserError
from engine.rundir.events import (
    FINAL_TYPES,
    Eval,
    Event,
    Finished,
    Started,
    Step,
    drop_superseded,
    read_events,
)
from engine.rundir.lock import lock_held

RUNS_ENV = "FINETUNE_TUI_RUNS"
CONFIG_FILE = "config.toml"
STATUS_FILE = "status.json"
STOP_FILE = "stop.request"
LOG_FILE = "engine.log"
ADAPTER_DIR = "adapter"
CHECKPOINTS_DIR = "checkpoints"

STATES = ("starting", "running", "finished", "stopped", "failed", "crashed", "unreadable")


def runs_root(override: str | Path | None = None) -> Path:
    """The runs root: the flag, else $FINETUNE_TUI_RUNS, else the user data folder."""
    if override:
        root = Path(override).expanduser()
    elif os.environ.get(RUNS_ENV):
        root = Path(os.environ[RUNS_ENV]).expanduser()
    else:
        import platformdirs

        root = Path(platformdirs.user_data_dir("finetune-tui", appauthor=False)) / "runs"
    return root.resolve()


def data_cache_dir(run_dir: Path | None = None) -> Path:
    """The Arrow cache of loaded data: one per runs root, shared by its runs (never ~/.cache).

    Shared so the tweak loop (the same data, run after run) converts a big file once; a check
    before a run directory exists fills the same cache the run then reuses.
    """
    root = run_dir.parent if run_dir is not None else runs_root()
    return root / ".cache" / "datasets"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:40] or "run"


def new_run_dir(config: RunConfig, root: Path) -> Path:
    """Create a fresh, uniquely named run directory holding `config.toml` (relative paths made
    absolute: the engine runs in the run directory, and a resume or a queue may start it)."""
    config = config.copy()
    config.anchor_paths()
    name = config.output.run_name or "-".join(
        Path(p).name.split(".")[0]
        for p in (config.model.model_name or "default", config.data.data_file_path or "example")
    )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        run_id = f"{stamp}-{_slug(name)}" + (f"-{n}" if n else "")
        path = root / run_id
        try:
            path.mkdir()
        except FileExistsError:
            continue
        try:
            config.save(path / CONFIG_FILE)
        except OSError:
            shutil.rmtree(path, ignore_errors=True)  # no half-made run left behind
            raise
        return path
    raise UserError("could not create a run directory", where=str(root))


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, if any."""
    folder = run_dir / CHECKPOINTS_DIR
    if not folder.is_dir():
        return None
    found = []
    for p in folder.glob("checkpoint-*"):
        if (p / "trainer_state.json").is_file():
            try:
                found.append((int(p.name.split("-")[-1]), p))
            except ValueError:
                continue
    return max(found)[1] if found else None


def adapter_dir(run_dir: Path, config: RunConfig) -> Path:
    """Where the final adapter of a run is written."""
    return (
        Path(config.output.output_dir).expanduser().resolve()
        if config.output.output_dir
        else (run_dir / ADAPTER_DIR)
    )


# -- process status -------------------------------------------------------------------------------
def process_start_time(pid: int) -> float | None:
    """The start time of a live process (guards against pid reuse), or None when it is gone."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def write_status(run_dir: Path, *, in_place_fallback: bool = False, **values: Any) -> None:
    """Merge values into `status.json` atomically.

    With `in_place_fallback`, a full disk that refuses the temporary file gets the status
    rewritten in the old file's own blocks instead (used to never leave a run "running").
    """
    from engine.core.atomic import atomic_write_bytes, is_disk_full, overwrite_in_place

    path = run_dir / STATUS_FILE
    data = read_status(run_dir)
    data.update(values, updated=time.time())
    blob = json.dumps(data).encode("utf-8")
    try:
        atomic_write_bytes(path, blob)
    except OSError as exc:
        if not (in_place_fallback and is_disk_full(exc)):
            raise
        overwrite_in_place(path, blob)


def read_status(run_dir: Path) -> dict[str, Any]:
    """The status file as a dict (empty when missing, unreadable or not a JSON object)."""
    try:
        data = json.loads((run_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def status_number(status: dict[str, Any], key: str, default: float = 0.0) -> float:
    """A number from the status file, or `default` when missing or malformed."""
    value = status.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return default
    try:
        number = float(value)
    except ValueError:
        return default
    return number if number == number and abs(number) != float("inf") else default


def _pid_alive(status: dict[str, Any]) -> bool:
    pid = int(status_number(status, "pid"))
    if pid <= 0:
        return False
    started = process_start_time(pid)
    if started is None:
        return False
    expected = status.get("pid_start")
    if expected is None:
        return True
    return abs(started - status_number(status, "pid_start", started + 1e9)) < 2.0


def engine_alive(run_dir: Path) -> bool:
    """True while the run's engine process is alive (it holds the run's lock, or is starting)."""
    return lock_held(run_dir) or _pid_alive(read_status(run_dir))


def check_resumable(run_dir: Path) -> None:
    """Refuse to resume a run that finished, or whose engine still works on it."""
    if engine_alive(run_dir):
        raise UserError(
            "the run is still going", where=run_dir.name, hint="attach to it, or stop it first"
        )
    check_not_finished(run_dir)


def check_not_finished(run_dir: Path) -> None:
    """Refuse to resume a run whose last engine finished it (no second `finished`)."""
    events = read_events(run_dir)
    last_start = max((i for i, e in enumerate(events) if isinstance(e, Started)), default=-1)
    if any(isinstance(e, Finished) for e in events[last_start + 1 :]):
        raise UserError(
            "this run has already finished: nothing to resume",
            where=run_dir.name,
            hint="its adapter is ready; to train more, start a new run from its settings",
        )


# -- the run list -----------------------------------------------------------------------------------
@dataclass
class RunInfo:
    """One row of the run list, rebuilt from a run directory."""

    run_id: str
    path: Path
    state: str
    model: str = ""
    data: str = ""
    started_at: float = 0.0
    updated_at: float = 0.0
    step: int = 0
    total_steps: int = 0
    best_metric: float | None = None
    metric_name: str = "accuracy"
    message: str = ""
    events: list[Event] = field(default_factory=list, repr=False)

    @property
    def duration_s(self) -> float:
        """Seconds of training (`engine.rundir.events.training_elapsed`: no loading, no queue wait)."""
        from engine.rundir.events import training_elapsed

        return training_elapsed(self.events, time.time() if self.active else None)

    @property
    def active(self) -> bool:
        """True while the engine is (or should be) working."""
        return self.state in ("starting", "running")


def derive_state(events: list[Event], alive: bool, launched_at: float = 0.0) -> str:
    """The run state from its events, whether its engine lives, and when it was last launched."""
    last_start = max((i for i, e in enumerate(events) if isinstance(e, Started)), default=-1)
    final = next((e for e in reversed(events[last_start + 1 :]) if e.type in FINAL_TYPES), None)
    if final is not None:
        # A resumed engine that has not said `started` yet is newer than the old final event.
        return "starting" if alive and launched_at > final.time else final.type
    if alive:
        return "running" if last_start >= 0 else "starting"
    return "crashed"


def run_info(run_dir: Path) -> RunInfo:
    """Summarise one run directory (never raises: a broken one is shown as `unreadable`)."""
    try:
        return _run_info(run_dir)
    except Exception as exc:  # noqa: BLE001 - one bad run must not hide the others
        why = exc.one_line() if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        return RunInfo(
            run_id=run_dir.name, path=run_dir, state="unreadable", message=f"unreadable: {why}"
        )


def _run_info(run_dir: Path) -> RunInfo:
    events = drop_superseded(read_events(run_dir))
    alive = engine_alive(run_dir)
    status = read_status(run_dir)
    state = derive_state(events, alive, status_number(status, "launched_at"))
    fresh = time.time() - run_dir.stat().st_mtime < 30
    if state == "crashed" and not events and not (run_dir / STATUS_FILE).exists() and fresh:
        state = "starting"  # the launcher has not written the status yet
    info = RunInfo(run_id=run_dir.name, path=run_dir, state=state, events=events)
    if state == "crashed" and status.get("state") == "failed":
        # The engine failed but could not write its event (a full disk): the status says why.
        info.state = "failed"
        info.message = str(status.get("message", ""))
    try:
        cfg = RunConfig.load(run_dir / CONFIG_FILE)
        info.model = cfg.model.model_name or "default"
        info.data = Path(cfg.data.data_file_path).name if cfg.data.data_file_path else "example"
        info.metric_name = cfg.best_metric
    except UserError as exc:
        info.message = info.message or exc.one_line()
    if events:
        info.started_at = events[0].time
        info.updated_at = events[-1].time
    for e in events:
        if isinstance(e, Started):
            info.total_steps = e.total_steps
            info.model = e.model or info.model
        elif isinstance(e, Step):
            info.step = e.step
        elif isinstance(e, Eval):
            value = e.metrics.get(info.metric_name)
            lower_is_better = info.metric_name.endswith("loss")
            if isinstance(value, (int, float)) and (
                info.best_metric is None
                or (value < info.best_metric if lower_is_better else value > info.best_metric)
            ):
                info.best_metric = float(value)
        elif isinstance(e, Finished):
            info.step = e.step or info.step
        elif e.type == "failed":
            info.message = getattr(e, "message", "")
    return info


def run_dirs(root: Path) -> list[Path]:
    """The run directories under the root, newest first; an unreadable root is a UserError."""
    try:
        if not root.is_dir():
            return []
        dirs = [p for p in root.iterdir() if p.is_dir() and (p / CONFIG_FILE).exists()]
    except OSError as exc:
        raise UserError(
            f"cannot read the runs folder ({exc.strerror or exc})",
            where=str(root),
            hint="check its permissions, or pick another with --runs-root",
        ) from None
    return sorted(dirs, key=lambda p: p.name, reverse=True)


def list_runs(root: Path) -> list[RunInfo]:
    """All runs under the root, newest first."""
    return [run_info(p) for p in run_dirs(root)]


def find_run(ref: str | None, root: Path) -> Path:
    """A run directory from an id, a unique id prefix, a path, or None for the newest run."""
    if ref and Path(ref).expanduser().is_dir() and (Path(ref).expanduser() / CONFIG_FILE).exists():
        return Path(ref).expanduser().resolve()
    runs = run_dirs(root)[::-1]
    if not runs:
        raise UserError("no runs yet", where=str(root), hint="start one with 'finetune-tui train'")
    if not ref:
        return runs[-1]
    matches = [p for p in runs if p.name == ref] or [p for p in runs if ref in p.name]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UserError(
            f"no run matches '{ref}'", where=str(root), hint="'finetune-tui runs' lists the run ids"
        )
    raise UserError(
        f"'{ref}' matches {len(matches)} runs",
        where=str(root),
        hint="give more of the id: " + ", ".join(p.name for p in matches[:4]),
    )


def delete_run(run_dir: Path) -> None:
    """Remove a run directory; refuses while its engine is alive."""
    if engine_alive(run_dir):
        raise UserError("the run is still going", where=run_dir.name, hint="stop it first")
    shutil.rmtree(run_dir)
