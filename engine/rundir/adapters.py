"""An adapter folder: write it as plain peft loads it, read its config, check where a copy goes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.config import RunConfig
from engine.core.errors import UserError
from engine.rundir.weights import RUN_CONFIG_FILE

METRICS_FILE = "metrics.json"


# What a Trainer checkpoint holds beside the adapter: not needed to use or share the adapter.
TRAINER_STATE_FILES = (
    "optimizer.pt",
    "scheduler.pt",
    "scaler.pt",
    "rng_state.pth",
    "training_args.bin",
    "trainer_state.json",
)


def save_adapter(
    loaded: Any,
    out: Path,
    cfg: RunConfig,
    metrics: dict[str, Any],
    task: Any,
    data: Any,
    run_dir: Path | None = None,
) -> Path:
    """Write the adapter so plain peft loads it, with the tokenizer, config, metrics and extras.

    Files are written in a staging folder and renamed into `out` (engine.rundir.outputs), which is
    then marked as written by the run in `run_dir`.
    """
    from engine.rundir.outputs import write_folder

    def write(folder: Path) -> None:
        loaded.model.save_pretrained(folder, safe_serialization=True)
        loaded.tokenizer.save_pretrained(folder)
        (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        cfg.save(folder / RUN_CONFIG_FILE)
        task.save_extras(folder, loaded, cfg, data, metrics)

    return write_folder(out, run_dir, write)


def load_adapter_config(adapter: Path) -> dict[str, Any]:
    """The adapter_config.json of an adapter folder, or a UserError."""
    path = adapter / "adapter_config.json"
    if not path.is_file():
        raise UserError(
            "no adapter here yet",
            where=str(adapter),
            hint="wait for a checkpoint or the end of training",
        )
    return json.loads(path.read_text(encoding="utf-8"))


def output_folder(adapter: Path, out: Path, overwrite: bool = False) -> Path:
    """Check an export destination: a folder we can write, not the adapter, not the user's files."""
    from engine.rundir.outputs import check_output_dir

    out = Path(out).expanduser()
    if out.exists() and out.resolve() == Path(adapter).resolve():
        raise UserError(
            "the destination is the adapter folder itself",
            where=str(out),
            hint="choose another folder",
        )
    return check_output_dir(out, overwrite=overwrite, what="export")
