"""Experiment trackers: TensorBoard and MLflow get a run's figures, resumed runs continue them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.rundir.events import Log, Step, Stopped, read_events
from engine.rundir.runs import STOP_FILE, new_run_dir, run_info
from engine.training.train import run_training
from tests.cli_helpers import assert_user_error, run_cli

needs_tensorboard = pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None, reason="pip install tensorboard"
)
needs_mlflow = pytest.mark.skipif(
    importlib.util.find_spec("mlflow") is None, reason="pip install mlflow-skinny"
)


def _config(model: Path, report_to: str, **training: object) -> RunConfig:
    cfg = RunConfig()
    cfg.model.model_name = str(model)
    t = cfg.training
    t.max_steps, t.batch_size, t.logging_steps, t.threads = 4, 8, 1, 1
    t.eval_strategy, t.eval_steps = "steps", 2
    t.save_strategy, t.save_steps, t.checkpoint_minutes = "steps", 2, 0
    t.report_to = report_to
    for key, value in training.items():
        setattr(t, key, value)
    return cfg


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag in a TensorBoard folder as (step, value), as TensorBoard shows them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(s.step, s.value) for s in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _stop_at(run_dir: Path, step: int):
    """A listener that asks the engine to stop once it has logged `step`."""

    def listener(event) -> None:
        if isinstance(event, Step) and event.step >= step:
            (run_dir / STOP_FILE).write_text("stop")

    return listener


@needs_tensorboard
def test_tensorboard_gets_loss_and_eval_metrics_per_step(tiny_model: Path, runs_root: Path):
    run_dir = new_run_dir(_config(tiny_model, "tensorboard"), runs_root)
    assert run_training(run_dir) == 0
    scalars = _scalars(run_dir / "tb")
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3, 4]
    assert [s for s, _ in scalars["eval/accuracy"]] == [2, 4]
    assert "eval/loss" in scalars and "train/learning_rate" in scalars
    # our own figures too: throughput and memory
    assert scalars["train/samples_per_s"][0][1] > 0
    assert scalars["train/peak_rss_gb"][0][1] > 0
    losses = [e.loss for e in read_events(run_dir) if isinstance(e, Step)]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx(losses)
    logs = [e.message for e in read_events(run_dir) if isinstance(e, Log)]
    assert "reporting to tensorboard" in logs


@needs_tensorboard
def test_a_resumed_run_continues_its_tensorboard_scalars(tiny_model: Path, runs_root: Path):
    """One folder, one run: the resumed engine purges what the killed one logged past its
    checkpoint and goes on from there."""
    from torch.utils.tensorboard import SummaryWriter

    cfg = _config(tiny_model, "tensorboard", max_steps=6, eval_strategy="no")
    run_dir = new_run_dir(cfg, runs_root)
    assert run_training(run_dir, listeners=[_stop_at(run_dir, 2)]) == 0
    assert run_info(run_dir).state == "stopped"
    saved = [e.step for e in read_events(run_dir) if isinstance(e, Stopped)][-1]
    # A killed engine would have logged steps past its last checkpoint: those are lost work.
    lost = SummaryWriter(str(run_dir / "tb"))
    for step in (saved + 1, saved + 2):
        lost.add_scalar("train/loss", 99.0, step)
    lost.close()
    assert run_training(run_dir, resume=True) == 0
    scalars = _scalars(run_dir / "tb")
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3, 4, 5, 6]
    assert 99.0 not in [v for _, v in scalars["train/loss"]]
    assert [p.name for p in (run_dir / "tb").iterdir() if p.is_dir()] == []  # no second run


@needs_mlflow
def test_mlflow_file_store_gets_metrics_params_and_one_run_after_resume(
    tiny_model: Path, runs_root: Path, monkeypatch: pytest.MonkeyPatch
):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = _config(tiny_model, "mlflow", max_steps=6, tracker_project="cpu-runs")
    run_dir = new_run_dir(cfg, runs_root)
    assert run_training(run_dir, listeners=[_stop_at(run_dir, 2)]) == 0
    assert run_training(run_dir, resume=True) == 0
    client = MlflowClient(tracking_uri=(run_dir / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("cpu-runs")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1  # the resumed engine reopened the same run
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["training.learning_rate"] == str(cfg.training.learning_rate)
    steps = sorted({m.step for m in client.get_metric_history(run.info.run_id, "train/loss")})
    assert steps == [1, 2, 3, 4, 5, 6]
    evals = client.get_metric_history(run.info.run_id, "eval/accuracy")
    assert sorted(m.step for m in evals) == [2, 4, 6]


def test_an_unknown_or_missing_tracker_is_one_message(monkeypatch: pytest.MonkeyPatch):
    cfg = RunConfig()
    cfg.training.report_to = "tensorboard, neptune"
    assert "unknown tracker 'neptune'" in cfg.problems()["training.report_to"]
    cfg.training.report_to = "none,mlflow"
    assert "none beside a tracker" in cfg.problems()["training.report_to"]
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    cfg.training.report_to = "wandb"
    message = cfg.problems()["training.report_to"]
    assert "wandb is not installed here" in message
    assert "pip install 'finetune-tui[wandb]'" in message
    cfg.training.report_to = "none"
    assert "training.report_to" not in cfg.problems()


@pytest.mark.skipif(importlib.util.find_spec("trackio") is not None, reason="trackio installed")
def test_cli_refuses_a_tracker_that_is_not_installed(tmp_path: Path):
    proc = run_cli("train", "--report_to", "trackio", "--max_steps", "1", runs_root=tmp_path / "r")
    assert_user_error(proc, "trackio is not installed", "pip install 'finetune-tui[trackio]'")
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_every_numeric_figure_of_a_step_is_reported_with_the_tasks_own():
    from engine.training.trackers import step_metrics

    step = Step(step=7, total_steps=9, loss=0.5, samples_per_s=3.0, metrics={"margin": 0.25})
    step.metrics["note"] = "text"  # not a number: left out
    found = step_metrics(step)
    assert found["train/loss"] == 0.5 and found["train/samples_per_s"] == 3.0
    assert found["train/margin"] == 0.25
    assert "train/note" not in found and "train/step" not in found
    assert "train/grad_norm" not in found  # None: not logged
    assert found["train/peak_rss_gb"] > 0
