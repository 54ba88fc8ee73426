"""Preflight: a few real steps give speed, run time and memory; warnings when memory is short."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.training.preflight import preflight
from engine.training.trainer_setup import total_steps as _total_steps


def _config(model: Path) -> RunConfig:
    cfg = RunConfig()
    cfg.model.model_name = str(model)
    cfg.training.batch_size = 8
    cfg.training.epochs = 2
    cfg.training.threads = 1
    return cfg


def test_report_covers_the_whole_run(tiny_model: Path, runs_root: Path) -> None:
    """Seconds per step, the step count of the real run and an estimate built from both."""
    cfg = _config(tiny_model)
    report = preflight(cfg, steps=3)
    assert report.seconds_per_step > 0
    assert report.samples_per_s == pytest.approx(8 / report.seconds_per_step)
    from engine.tasks.classification.data import load_splits

    splits = load_splits(cfg.data, seed=cfg.training.seed)
    assert report.total_steps == _total_steps(len(splits.train_texts), cfg)
    assert report.estimated_s >= report.seconds_per_step * report.total_steps
    assert 0 < report.peak_rss_bytes < 8 * 1024**3
    assert report.fits_in_memory and not report.warnings
    text = "\n".join(report.lines())
    assert "s/step" in text and f"{report.total_steps} steps" in text and "GB free" in text


def test_too_little_memory_is_a_warning(
    tiny_model: Path, runs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the estimated peak exceeds free memory, the report says what to lower."""
    monkeypatch.setattr("engine.core.hardware.free_memory_bytes", lambda: 1024)
    report = preflight(_config(tiny_model), steps=2)
    assert not report.fits_in_memory
    assert any("batch_size" in w for w in report.warnings)
    assert report.lines()[-1].startswith("warning:")
