"""Save what a run produced: the adapter folder (peft layout + task extras) and merged models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from engine.config import RunConfig
from engine.errors import UserError
from engine.predict import RUN_CONFIG_FILE

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
    loaded: Any, out: Path, cfg: RunConfig, metrics: dict[str, Any], task: Any, data: Any
) -> Path:
    """Write the adapter so plain peft loads it, with the tokenizer, config, metrics and extras."""
    out.mkdir(parents=True, exist_ok=True)
    loaded.model.save_pretrained(out, safe_serialization=True)
    loaded.tokenizer.save_pretrained(out)
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    cfg.save(out / RUN_CONFIG_FILE)
    task.save_extras(out, loaded, cfg, data, metrics)
    return out


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


def output_folder(adapter: Path, out: Path) -> Path:
    """Check and create an export destination: a folder we can write, not the adapter itself."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(
            "the destination is a file, not a folder",
            where=str(out),
            hint="give a folder path (it is created if missing)",
        )
    if out.exists() and out.resolve() == Path(adapter).resolve():
        raise UserError(
            "the destination is the adapter folder itself",
            where=str(out),
            hint="choose another folder",
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"cannot create the folder ({exc.strerror or exc})",
            where=str(out),
            hint="choose a folder you can write to",
        ) from None
    return out


def _task_for(folder: Path) -> Any:
    from engine.predict import task_of
    from engine.tasks import get_task

    return get_task(task_of(folder))


def copy_adapter(adapter: Path, out: Path) -> Path:
    """Copy an adapter folder (without a checkpoint's optimizer state) to `out`."""
    adapter = Path(adapter)
    load_adapter_config(adapter)
    out = output_folder(adapter, out)
    try:
        shutil.copytree(
            adapter, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*TRAINER_STATE_FILES)
        )
    except (OSError, shutil.Error) as exc:
        raise UserError(
            f"copy failed ({exc})", where=str(out), hint="check the free space and permissions"
        ) from None
    _task_for(adapter).export_extras(out, adapter, None)
    return out


def export_merged(adapter: Path, out: Path, threads: int = 0) -> Path:
    """Merge the LoRA weights into the base model and save a plain transformers model."""
    adapter = Path(adapter)
    load_adapter_config(adapter)
    out = output_folder(adapter, out)
    task = _task_for(adapter)
    model, tokenizer = task.load_for_inference(adapter, threads)
    merged = model.merge_and_unload()
    try:
        merged.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
    except OSError as exc:
        raise UserError(
            f"cannot write the merged model ({exc})",
            where=str(out),
            hint="check the free space and permissions",
        ) from None
    for name in (METRICS_FILE, RUN_CONFIG_FILE):
        if (adapter / name).is_file():
            (out / name).write_bytes((adapter / name).read_bytes())
    task.export_extras(out, adapter, merged)
    return out
