"""Which weights a run has to use, and which task they belong to (inference itself is per task)."""

from __future__ import annotations

import json
from pathlib import Path

from engine.config import RunConfig
from engine.core.errors import UserError
from engine.rundir.runs import CONFIG_FILE, adapter_dir, last_checkpoint

RUN_CONFIG_FILE = "run_config.toml"
PEFT_TASKS = {"SEQ_CLS": "classification", "CAUSAL_LM": "causal-lm"}


def find_weights(run_dir: Path) -> Path:
    """The run's final adapter, else its newest checkpoint (for a run still training)."""
    cfg = RunConfig.load(run_dir / CONFIG_FILE)
    final = adapter_dir(run_dir, cfg)
    if (final / "adapter_config.json").is_file():
        return final
    ckpt = last_checkpoint(run_dir)
    if ckpt and (ckpt / "adapter_config.json").is_file():
        return ckpt
    raise UserError(
        "this run has no adapter or checkpoint yet",
        where=run_dir.name,
        hint="wait for the first checkpoint (end of the first epoch)",
    )


def task_of(folder: Path) -> str:
    """The task a weights folder was trained for (adapter, checkpoint or merged model)."""
    folder = Path(folder)
    saved = folder / RUN_CONFIG_FILE
    if saved.is_file():
        try:
            return RunConfig.load(saved).task
        except UserError:
            pass
    run_cfg = folder.parent.parent / CONFIG_FILE  # a checkpoint inside a run directory
    if folder.parent.name == "checkpoints" and run_cfg.is_file():
        return RunConfig.load(run_cfg).task
    for name, key in (("adapter_config.json", "task_type"), ("config.json", "architectures")):
        path = folder / name
        if path.is_file():
            try:
                value = json.loads(path.read_text(encoding="utf-8")).get(key)
            except (OSError, ValueError):
                continue
            if isinstance(value, str) and value in PEFT_TASKS:
                return PEFT_TASKS[value]
            if isinstance(value, list) and any("CausalLM" in str(v) for v in value):
                return "causal-lm"
    return "classification"
