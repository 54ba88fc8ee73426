"""Wall-clock checkpoints: a crash loses at most the interval, and only the last K are kept."""

from __future__ import annotations

from pathlib import Path

from engine.config import RunConfig
from engine.events import Checkpoint, read_events
from engine.runs import new_run_dir, run_info
from engine.train import last_checkpoint, run_training


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
