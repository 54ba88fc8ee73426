"""Experiment trackers (TensorBoard, MLflow, W&B, trackio) fed from the run's own events.

The engine's events are the source: every numeric field of a `step` or `eval` event (and of
`finished`'s metrics) goes to each tracker named in `report_to`, so a metric a task adds flows
through without code here. Only rank 0 writes events, so only rank 0 reports. A resumed engine
continues the same tracker run: TensorBoard writes into the same folder and purges the steps the
stopped engine logged past its checkpoint; MLflow and W&B reopen the run id kept in
`RUN/trackers.json`.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from engine.config.validation import tracker_names
from engine.core.atomic import atomic_write_text
from engine.rundir.events import Eval, Event, EventWriter, Failed, Finished, Log, Started, Step

STATE_FILE = "trackers.json"
TB_DIR = "tb"
MLFLOW_DIR = "mlruns"
DEFAULT_PROJECT = "finetune-tui"
# Step fields that are bookkeeping, not metrics
_NOT_METRICS = frozenset({"time", "step", "total_steps", "world_size", "nnodes", "eta_s"})


def peak_rss_gb() -> float:
    """This process's peak resident memory so far, in GB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024**3 if sys.platform == "darwin" else 1024**2), 3)


def step_metrics(event: Step) -> dict[str, float]:
    """The numeric figures of a step event (and the peak RSS), under train/."""
    found = {
        f"train/{k}": float(v)
        for k, v in vars(event).items()
        if k not in _NOT_METRICS and _is_number(v)
    }
    found.update(eval_metrics(event.metrics, "train"))  # a task's own figures (preference)
    found["train/peak_rss_gb"] = peak_rss_gb()
    return found


def eval_metrics(metrics: dict[str, Any], prefix: str = "eval") -> dict[str, float]:
    """The numeric entries of an eval event's metrics (per-class tables are left out)."""
    return {f"{prefix}/{k}": float(v) for k, v in metrics.items() if _is_number(v)}


def flat_params(config: dict[str, Any]) -> dict[str, str]:
    """A run config's settings as section.name -> text (the trackers' hyperparameters)."""
    params: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            params.update({f"{key}.{k}": str(v) for k, v in value.items()})
        else:
            params[key] = str(value)
    return params


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


class Tracker:
    """One experiment tracker: open (or reopen) its run, log numbers at a step, close."""

    name = ""
    note = ""  # a line for the run log once opened (e.g. where an offline run waits)

    def open(self, run_dir: Path, started: Started, state: dict[str, Any]) -> None:
        """Start or continue the tracker's run; may record ids in `state` (saved in the run)."""

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Log metrics at a global step."""

    def close(self, outcome: str) -> None:
        """End the tracker's run: finished, stopped or failed."""


class TensorBoardTracker(Tracker):
    """Scalars under RUN/tb (or logging_dir); the config as a text summary."""

    name = "tensorboard"

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.writer: Any = None

    def open(self, run_dir: Path, started: Started, state: dict[str, Any]) -> None:
        """Write into the run's log folder; a resumed run purges what follows its checkpoint."""
        from torch.utils.tensorboard import SummaryWriter

        folder = Path(self.log_dir) if self.log_dir else run_dir / TB_DIR
        # the checkpoint's own step was logged; what the last engine logged after it is lost work
        purge = started.resumed_from_step + 1 if started.resumed_from_step else None
        self.writer = SummaryWriter(str(folder), purge_step=purge, flush_secs=30)
        if not purge:
            lines = [f"    {k} = {v}" for k, v in flat_params(started.config).items()]
            self.writer.add_text("config", "\n".join(lines), 0)

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Add each metric as a scalar at `step`."""
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self, outcome: str) -> None:
        """Flush and close the event file."""
        self.writer.close()


class MlflowTracker(Tracker):
    """A run in an MLflow store: RUN/mlruns unless tracking_uri or MLFLOW_TRACKING_URI says."""

    name = "mlflow"

    def __init__(self, uri: str, project: str) -> None:
        self.uri, self.project = uri, project
        self.client: Any = None
        self.run_id = ""

    def open(self, run_dir: Path, started: Started, state: dict[str, Any]) -> None:
        """Reopen the run kept in `state` or create one, then log the settings as params."""
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        uri = self.uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
        if not uri:
            uri = (run_dir / MLFLOW_DIR).as_uri()
            # MLflow 3 keeps its file store in maintenance mode behind this switch
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        self.run_id = state.get("mlflow_run_id", "")
        if self.run_id:
            self.client.update_run(self.run_id, status="RUNNING")
            return
        found = self.client.get_experiment_by_name(self.project)
        experiment = found.experiment_id if found else self.client.create_experiment(self.project)
        tags = {"finetune_tui.run_dir": str(run_dir), "finetune_tui.task": started.task}
        run = self.client.create_run(experiment, run_name=run_dir.name, tags=tags)
        self.run_id = state["mlflow_run_id"] = run.info.run_id
        params = [Param(k, v[:6000]) for k, v in flat_params(started.config).items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def log(self, metrics: dict[str, float], step: int) -> None:
        """One batch of metrics at `step`."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def close(self, outcome: str) -> None:
        """Mark the run finished, killed (stopped: resume continues it) or failed."""
        status = {"finished": "FINISHED", "stopped": "KILLED"}.get(outcome, "FAILED")
        self.client.set_terminated(self.run_id, status=status)


class WandbTracker(Tracker):
    """A W&B run (offline without an API key); a resumed engine continues the same id."""

    name = "wandb"

    def __init__(self, project: str) -> None:
        self.project = project
        self.run: Any = None
        self.mode: Any = ""  # wandb's Literal of modes

    def open(self, run_dir: Path, started: Started, state: dict[str, Any]) -> None:
        """wandb.init with the kept id and resume='allow'; offline where no key is set."""
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")  # our events say what happens
        self.mode = os.environ.get("WANDB_MODE") or ("online" if _wandb_key() else "offline")
        if self.mode == "offline":
            self.note = f"W&B is offline (no API key): wandb sync {run_dir / 'wandb'}/offline-run-*"
        run_id = state.get("wandb_id") or secrets.token_hex(4)
        state["wandb_id"] = run_id
        self.run = wandb.init(
            project=self.project,
            name=run_dir.name,
            id=run_id,
            resume="allow",
            dir=str(run_dir),
            config=flat_params(started.config),
            mode=self.mode,
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Log at `step` (W&B drops steps below its last; a resume purges nothing)."""
        self.run.log(metrics, step=step)

    def close(self, outcome: str) -> None:
        """Finish the run (exit code 1 for a failure)."""
        self.run.finish(exit_code=0 if outcome != "failed" else 1)


class TrackioTracker(Tracker):
    """A trackio run (local; `trackio show` opens its dashboard), resumed by name."""

    name = "trackio"

    def __init__(self, project: str) -> None:
        self.project = project
        self.module: Any = None

    def open(self, run_dir: Path, started: Started, state: dict[str, Any]) -> None:
        """trackio.init with the run directory's name, resuming it when it exists."""
        import trackio

        self.module = trackio
        trackio.init(
            project=self.project,
            name=run_dir.name,
            config=flat_params(started.config),
            resume="allow",
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Log at `step`."""
        self.module.log(metrics, step=step)

    def close(self, outcome: str) -> None:
        """Finish the run."""
        self.module.finish()


def _wandb_key() -> bool:
    """Whether W&B has credentials here (an API key in the environment or ~/.netrc)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    try:
        return "api.wandb.ai" in netrc.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def make_trackers(training: dict[str, Any]) -> list[Tracker]:
    """The trackers a config's training section names, not yet opened."""
    project = str(training.get("tracker_project") or DEFAULT_PROJECT)
    made: list[Tracker] = []
    for name in tracker_names(str(training.get("report_to") or "none")):
        if name == "tensorboard":
            made.append(TensorBoardTracker(str(training.get("logging_dir") or "")))
        elif name == "mlflow":
            made.append(MlflowTracker(str(training.get("tracking_uri") or ""), project))
        elif name == "wandb":
            made.append(WandbTracker(project))
        elif name == "trackio":
            made.append(TrackioTracker(project))
    return made


class TrackerHub:
    """An event listener that forwards a run's figures to its trackers (rank 0 only).

    A tracker that fails is switched off with one warning in the run log: a tracker never stops
    a training run.
    """

    def __init__(self, run_dir: Path, writer: EventWriter) -> None:
        self.run_dir = run_dir
        self.writer = writer
        self.trackers: list[Tracker] = []
        self.state_path = run_dir / STATE_FILE

    def __call__(self, event: Event) -> None:
        """Handle one event as the writer emits it."""
        if isinstance(event, Started):
            self._open(event)
        elif not self.trackers:
            return
        elif isinstance(event, Step):
            self._each("log", step_metrics(event), event.step)
        elif isinstance(event, Eval):
            self._each("log", eval_metrics(event.metrics), event.step)
        elif isinstance(event, Finished):
            if final := eval_metrics(event.metrics, "final"):
                self._each("log", final, event.step)
            self._close("finished")
        elif event.type == "stopped":
            self._close("stopped")
        elif isinstance(event, Failed):
            self._close("failed")

    def _open(self, started: Started) -> None:
        self._close("stopped")  # a second `started` in one process: end what the first opened
        wanted = make_trackers(started.config.get("training", {}))
        if not wanted:
            return
        state = self._load_state()
        for tracker in wanted:
            try:
                tracker.open(self.run_dir, started, state)
            except Exception as exc:  # noqa: BLE001 - any tracker failure is reported, not fatal
                self._warn(tracker, "could not start", exc)
                continue
            self.trackers.append(tracker)
            if tracker.note:
                self.writer.emit(Log(message=tracker.note))
        atomic_write_text(self.state_path, json.dumps(state, indent=1))
        names = ", ".join(t.name for t in self.trackers)
        if names:
            resumed = " (continuing its runs)" if started.resumed_from_step else ""
            self.writer.emit(Log(message=f"reporting to {names}{resumed}"))

    def _each(self, method: str, metrics: dict[str, float], step: int) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, method)(metrics, step)
            except Exception as exc:  # noqa: BLE001
                self.trackers.remove(tracker)
                self._warn(tracker, "stopped reporting", exc)

    def _close(self, outcome: str) -> None:
        trackers, self.trackers = self.trackers, []
        for tracker in trackers:
            try:
                tracker.close(outcome)
            except Exception as exc:  # noqa: BLE001
                self._warn(tracker, "did not close cleanly", exc)

    def _warn(self, tracker: Tracker, what: str, exc: Exception) -> None:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        self.writer.emit(Log(level="warning", message=f"{tracker.name} {what}: {text[:200]}"))

    def _load_state(self) -> dict[str, Any]:
        try:
            found = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return found if isinstance(found, dict) else {}
