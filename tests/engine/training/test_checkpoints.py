"""Wall-clock checkpoints: a crash loses at most the interval, and only the last K are kept."""

from __future__ import annotations

from pathlib import Path

from engine.config import RunConfig
from engine.rundir.events import Checkpoint, Eval, Finished, Log, read_events
from engine.rundir.runs import new_run_dir, run_info
from engine.training.train import last_checkpoint, run_training


def _config(model: Path) -> RunConfig:
    cfg = RunConfig()
    cfg.model.model_name = str(model)
    cfg.training.max_steps = 6
    cfg.training.logging_steps = 2
    cfg.training.eval_strategy = "no"
    cfg.training.save_strategy = "no"
    cfg.training.save_total_limit = 2
    cfg.training.checkpoint_minutes = 1e-6  # every step is "ten minutes later"
    return cfg


def test_wall_clock_checkpoints_keep_the_last_k(tiny_model: Path, runs_root: Path) -> None:
    """With save_strategy 'no', the wall-clock interval alone saves, and only K are kept."""
    run_dir = new_run_dir(_config(tiny_model), runs_root)
    assert run_training(run_dir) == 0
    saved = [e for e in read_events(run_dir) if isinstance(e, Checkpoint)]
    assert len(saved) >= 5  # one per step
    kept = sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*"))
    assert len(kept) == 2
    assert last_checkpoint(run_dir).name == "checkpoint-6"
    assert run_info(run_dir).state == "finished"


def test_early_stopping_ends_the_run_and_says_why(tiny_model: Path, runs_root: Path) -> None:
    """With a metric that cannot improve (a vanishing lr), patience 1 stops after the second evaluation."""
    cfg = _config(tiny_model)
    cfg.training.max_steps = 20
    cfg.training.learning_rate = 1e-12  # nothing moves: the metric cannot improve
    cfg.training.warmup_ratio = 0.0
    cfg.training.eval_strategy = "steps"
    cfg.training.eval_steps = 2
    cfg.training.checkpoint_minutes = 0
    cfg.training.early_stopping_patience = 1
    run_dir = new_run_dir(cfg, runs_root)
    assert run_training(run_dir) == 0
    events = read_events(run_dir)
    evals = [e.step for e in events if isinstance(e, Eval)]
    assert evals == [2, 4]
    finished = [e for e in events if isinstance(e, Finished)][-1]
    assert finished.step == 4
    logs = [e.message for e in events if isinstance(e, Log)]
    assert any("stopped early at step 4" in m and "accuracy" in m for m in logs), logs
    assert run_info(run_dir).state == "finished"
