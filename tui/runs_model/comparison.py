"""What a comparison of runs shows: curves, the settings that differ and final figures (pure data)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import ZERO_MEANS_AUTO, RunConfig, all_fields
from engine.rundir.events import Eval, Finished, Step
from engine.runs.queue import QueueEntry, short_value
from tui.format import STAMP, UNKNOWN, as_number, clip, run_name

# Settings that name or place a run rather than change how it trains.
NOT_SETTINGS = {
    "run_name",
    "sweep_id",
    "output_dir",
    "notify",
    "report_to",
    "logging_dir",
    "tracking_uri",
    "tracker_project",
}
SHORT_NAMES = {
    "learning_rate": "lr",
    "lora_r": "r",
    "lora_alpha": "alpha",
    "batch_size": "batch",
    "epochs": "epochs",
    "lora_dropout": "dropout",
    "data_file_path": "data",
    "model_name": "model",
    "target_modules": "targets",
    "max_train_rows": "rows",
}
# (plotext colour, rich colour): the same colour for a run's curves and its row in the table.
COLOURS = [
    ("cyan", "cyan"),
    ("orange", "dark_orange"),
    ("green", "green"),
    ("magenta", "magenta"),
    ("blue", "dodger_blue1"),
    ("red", "red"),
    ("yellow", "yellow"),
    ("white", "white"),
]


@dataclass
class RunSeries:
    """One run's curves and figures (a queued run has no curves yet)."""

    key: str
    name: str
    state: str
    config: RunConfig | None
    metric_name: str = "accuracy"
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_losses: list[float | None] = field(default_factory=list)
    eval_metric: list[float | None] = field(default_factory=list)
    best: float | None = None
    final: dict[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    samples_per_s: float | None = None
    started_at: float = 0.0
    run_dir: Path | None = None

    @property
    def active(self) -> bool:
        """True while the run trains (or waits in the queue): the view keeps refreshing."""
        return self.state in ("starting", "running", "queued")


def readable_name(run_id: str) -> str:
    """The run's name with the time it started (`20261127-083012-x` -> `08:30 x`)."""
    name = run_name(run_id)
    if STAMP.match(run_id):
        return f"{run_id[9:11]}:{run_id[11:13]} {name}"
    return name


def distinct_names(series: list[RunSeries]) -> None:
    """Make the runs' names tell them apart: add seconds, then the date, then a number."""
    for _ in range(3):
        seen: dict[str, list[RunSeries]] = {}
        for s in series:
            seen.setdefault(s.name, []).append(s)
        clashes = [group for group in seen.values() if len(group) > 1]
        if not clashes:
            return
        for group in clashes:
            for n, s in enumerate(group, start=1):
                stamp = s.key if STAMP.match(s.key) else ""
                if stamp and s.name.startswith(f"{stamp[9:11]}:{stamp[11:13]} "):
                    s.name = f"{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]} {run_name(s.key)}"
                elif stamp and not s.name.startswith(stamp[4:8]):
                    s.name = f"{stamp[4:6]}-{stamp[6:8]} {s.name}"
                else:
                    s.name = f"{s.name} ({n})"


def load_series(run_dir: Path) -> RunSeries:
    """Read one run (call from a worker: it reads the disk)."""
    from engine.rundir.runs import run_info

    info = run_info(run_dir)
    try:
        config: RunConfig | None = RunConfig.load(run_dir / "config.toml")
    except Exception:  # noqa: BLE001 - an unreadable config still leaves the curves
        config = None
    s = RunSeries(
        key=run_dir.name,
        name=readable_name(run_dir.name),
        state=info.state,
        config=config,
        metric_name=info.metric_name,
        best=info.best_metric,
        duration_s=info.duration_s,
        started_at=info.started_at,
        run_dir=run_dir,
    )
    by_step: dict[int, float] = {}
    evals: dict[int, dict[str, Any]] = {}
    speeds: list[float] = []
    for event in info.events:
        if isinstance(event, Step):
            if event.loss is not None:
                by_step[event.step] = event.loss  # a resumed run's repeated steps keep the latest
            if event.samples_per_s:
                speeds.append(event.samples_per_s)
        elif isinstance(event, Eval):
            evals[event.step] = event.metrics
        elif isinstance(event, Finished):
            s.final = {k: v for k, v in event.metrics.items() if isinstance(v, (int, float))}
    s.steps = sorted(by_step)
    s.losses = [by_step[k] for k in s.steps]
    s.eval_steps = sorted(evals)
    s.eval_losses = [as_number(evals[k].get("loss")) for k in s.eval_steps]
    s.eval_metric = [as_number(evals[k].get(s.metric_name)) for k in s.eval_steps]
    if not s.final and s.eval_steps:
        last = evals[s.eval_steps[-1]]
        s.final = {k: v for k, v in last.items() if isinstance(v, (int, float))}
    s.samples_per_s = statistics.median(speeds) if speeds else None
    return s


def queued_series(entry: QueueEntry, place: int) -> RunSeries:
    """A queued run as a row: its settings, no figures yet."""
    return RunSeries(
        key="queued-" + entry.entry_id,
        name=f"#{place} {entry.name}",
        state="queued",
        config=entry.config,
        metric_name=entry.config.best_metric,
    )


def sweep_members(root: Path, sweep_id: str) -> tuple[list[Path], list[QueueEntry]]:
    """The run directories and the queued entries of one sweep (reads the disk)."""
    from engine.runs.queue import entries

    runs = []
    for run_dir in sorted(Path(root).iterdir()) if Path(root).is_dir() else []:
        try:
            text = (run_dir / "config.toml").read_text(encoding="utf-8")
        except OSError:
            continue
        if sweep_id in text:
            cfg = RunConfig.from_toml(text) if "sweep_id" in text else None
            if cfg is not None and cfg.output.sweep_id == sweep_id:
                runs.append(run_dir)
    return runs, [e for e in entries(root) if e.sweep_id == sweep_id]


def differing(configs: list[RunConfig | None]) -> list[str]:
    """The flat names of the settings whose values differ between the configs."""
    known = [c for c in configs if c is not None]
    if len(known) < 2:
        return []
    names = []
    for section, f in all_fields():
        if f.name in NOT_SETTINGS:
            continue
        values = {repr(getattr(getattr(c, section), f.name)) for c in known}
        if len(values) > 1:
            names.append(f.name)
    return names


SETTING_CHARS = 14


def setting_text(config: RunConfig | None, name: str) -> str:
    """A setting's value, short, for a table cell."""
    if config is None:
        return UNKNOWN
    value = config.get(name)
    if name.endswith("_path") or name == "model_name":
        text = Path(str(value)).name or "default"
    elif name in ZERO_MEANS_AUTO and not value:
        text = "auto"
    else:
        text = short_value(value)
    # Cut visibly: at 80 columns a long value (label names, a path) pushed the table's later
    # columns off screen and was itself cut without a mark ("negative,p").
    return clip(text, SETTING_CHARS)


def now() -> float:
    """The wall clock (a function, so tests can fix it)."""
    return time.time()
