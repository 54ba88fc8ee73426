"""Relative paths given from the user's folder still work in an engine that runs elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.rundir.runs import CONFIG_FILE, new_run_dir
from engine.runs import queue


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    here = tmp_path / "project"
    (here / "models" / "tiny").mkdir(parents=True)
    (here / "data").mkdir()
    (here / "data" / "train.jsonl").write_text('{"text": "a", "label": 0}\n')
    (here / "data" / "dev.jsonl").write_text('{"text": "b", "label": 1}\n')
    monkeypatch.chdir(here)
    return here


def _relative() -> RunConfig:
    cfg = RunConfig()
    cfg.model.model_name = "models/tiny"
    cfg.data.data_file_path = "data/train.jsonl"
    cfg.data.eval_file_path = "./data/dev.jsonl"
    cfg.output.output_dir = "out/adapter"
    return cfg


def test_a_run_directory_keeps_absolute_paths(workdir: Path, tmp_path: Path) -> None:
    cfg = _relative()
    run_dir = new_run_dir(cfg, tmp_path / "runs")
    saved = RunConfig.load(run_dir / CONFIG_FILE)
    assert saved.model.model_name == str(workdir / "models" / "tiny")
    assert saved.data.data_file_path == str(workdir / "data" / "train.jsonl")
    assert saved.data.eval_file_path == str(workdir / "data" / "dev.jsonl")
    assert saved.output.output_dir == str(workdir / "out" / "adapter")  # made later, still here
    assert cfg.model.model_name == "models/tiny", "the caller's config is left as typed"
    assert run_dir.name.endswith("tiny-train")


def test_hub_ids_and_home_paths_stay_as_written(workdir: Path, tmp_path: Path) -> None:
    cfg = RunConfig()
    cfg.model.model_name = "HuggingFaceTB/SmolLM2-135M"
    cfg.data.data_file_path = "stanfordnlp/sst2"
    cfg.data.eval_file_path = "~/dev.jsonl"
    saved = RunConfig.load(new_run_dir(cfg, tmp_path / "runs") / CONFIG_FILE)
    assert saved.model.model_name == "HuggingFaceTB/SmolLM2-135M"
    assert saved.data.data_file_path == "stanfordnlp/sst2"
    assert saved.data.eval_file_path == "~/dev.jsonl"


def test_a_queued_run_keeps_absolute_paths(workdir: Path, tmp_path: Path) -> None:
    entry = queue.add(tmp_path / "runs", _relative())
    (stored,) = queue.entries(tmp_path / "runs")
    assert stored.entry_id == entry.entry_id
    assert stored.config.data.data_file_path == str(workdir / "data" / "train.jsonl")
    assert stored.config.model.model_name == str(workdir / "models" / "tiny")
