"""batch_size 0 (auto): the task's batch for the training rows, the same in every entry point."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from engine.config import TASKS, RunConfig
from engine.config.tasks import AUTO_BATCH_SIZE, auto_batch_size
from engine.rundir.events import Log, Started, read_events
from engine.rundir.runs import CONFIG_FILE, new_run_dir
from engine.training.preflight import preflight
from engine.training.train import run_training
from tests.reliability_helpers import tiny_cfg


@pytest.mark.parametrize(
    ("task", "rows", "batch"),
    [
        ("classification", 2_000, 12),
        ("classification", 9_999, 12),
        ("classification", 10_000, 16),
        ("classification", 20_000, 16),
        ("classification", 49_999, 16),
        ("classification", 67_349, 12),
        ("causal-lm", 20_000, 12),
        ("classification", None, AUTO_BATCH_SIZE),  # rows not counted yet
    ],
)
def test_the_batch_follows_the_rows(task: str, rows: int | None, batch: int) -> None:
    assert auto_batch_size(task, rows) == batch


@pytest.mark.parametrize(
    ("task", "max_length", "batch"),
    [
        ("causal-lm", 0, 12),  # the length not chosen yet
        ("causal-lm", 256, 12),
        ("causal-lm", 512, 12),
        ("causal-lm", 1024, 6),
        ("causal-lm", 2048, 3),
        ("causal-lm", 8192, 1),
        ("classification", 2048, 12),  # no token budget: rows are short
    ],
)
def test_long_rows_take_fewer_a_step(task: str, max_length: int, batch: int) -> None:
    assert auto_batch_size(task, 1_000, max_length=max_length) == batch


def test_the_batch_is_one_the_processes_can_share() -> None:
    assert auto_batch_size("classification", 20_000, world=2) == 16
    assert auto_batch_size("classification", 20_000, world=3) == 18  # 16 cannot be split in 3
    assert auto_batch_size("classification", 20_000, grad_accum=3, world=3) == 16
    assert auto_batch_size("causal-lm", 100, world=4, max_length=2048) == 4  # 3 rounded up


def test_a_set_batch_is_kept_and_auto_stays_in_the_config() -> None:
    cfg = RunConfig()
    assert cfg.training.batch_size == 0 and cfg.validate()
    resolved = cfg.with_batch_size(20_000)
    assert resolved.training.batch_size == 16 and cfg.training.batch_size == 0
    cfg.training.batch_size = 7
    assert cfg.with_batch_size(20_000).training.batch_size == 7
    assert cfg.batch_size_for(20_000, max_length=4096) == 7
    lm = RunConfig(task="causal-lm")
    lm.model.max_length = 1024  # a set length counts without being passed
    assert lm.batch_size_for() == 6 and lm.batch_size_for(max_length=2048) == 3


def _small_bands(monkeypatch: pytest.MonkeyPatch, batch: int) -> None:
    """Make auto pick `batch` from 1 row on, so a tiny run shows the choice being used."""
    spec = TASKS["classification"]
    monkeypatch.setitem(
        TASKS, "classification", dataclasses.replace(spec, batch_bands=((1, batch),))
    )


def test_a_run_trains_with_the_auto_batch(
    tiny_model: Path, runs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _small_bands(monkeypatch, 5)
    run_dir = new_run_dir(tiny_cfg(tiny_model, batch_size=0), runs_root)
    assert run_training(run_dir) == 0
    events = read_events(run_dir)
    started = next(e for e in events if isinstance(e, Started))
    assert started.batch_size == 5
    assert any(isinstance(e, Log) and e.message == "batch_size auto: 5" for e in events)
    # The saved settings keep "auto", so a rerun on other data chooses again.
    assert RunConfig.load(run_dir / CONFIG_FILE).training.batch_size == 0


def test_preflight_times_the_auto_batch(
    tiny_model: Path, runs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _small_bands(monkeypatch, 5)
    cfg = tiny_cfg(tiny_model, batch_size=0, max_steps=0, epochs=1.0)
    report = preflight(cfg, steps=2)
    assert report.samples_per_s == pytest.approx(5 / report.seconds_per_step)
    assert cfg.training.batch_size == 0  # the caller's config is not changed


def test_a_causal_lm_run_takes_rows_for_its_length(
    runs_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With max_length 64 and a budget of 128 tokens a step, a step takes 2 rows."""
    import json

    from tests.tiny_lm import make_tiny_decoder

    spec = TASKS["causal-lm"]
    monkeypatch.setitem(TASKS, "causal-lm", dataclasses.replace(spec, step_tokens=128))
    model = make_tiny_decoder(tmp_path / "m", "llama")
    data = tmp_path / "d.jsonl"
    rows = [{"prompt": f"say {i}", "completion": f"number {i}"} for i in range(12)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tiny_cfg(model, batch_size=0)
    cfg.task, cfg.data.data_file_path, cfg.model.max_length = "causal-lm", str(data), 64
    cfg.data.validation_fraction = 0
    run_dir = new_run_dir(cfg, runs_root)
    assert run_training(run_dir) == 0
    started = next(e for e in read_events(run_dir) if isinstance(e, Started))
    assert started.batch_size == 2
