"""Export what a run produced: a copy of the adapter, or a merged model (by the weights' task)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from engine.core.errors import UserError
from engine.rundir.adapters import (
    METRICS_FILE,
    TRAINER_STATE_FILES,
    load_adapter_config,
    output_folder,
)
from engine.rundir.weights import RUN_CONFIG_FILE


def _task_for(folder: Path) -> Any:
    from engine.rundir.weights import task_of
    from engine.tasks import get_task

    return get_task(task_of(folder))


def copy_adapter(adapter: Path, out: Path, overwrite: bool = False) -> Path:
    """Copy an adapter folder (without a checkpoint's optimizer state) to `out`."""
    from engine.rundir.outputs import MARKER, write_folder

    adapter = Path(adapter)
    load_adapter_config(adapter)
    out = output_folder(adapter, out, overwrite)

    def write(folder: Path) -> None:
        shutil.copytree(
            adapter,
            folder,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(*TRAINER_STATE_FILES, MARKER),
        )
        _task_for(adapter).export_extras(folder, adapter, None)

    try:
        return write_folder(out, None, write)
    except (OSError, shutil.Error) as exc:
        raise UserError(
            f"copy failed ({exc})", where=str(out), hint="check the free space and permissions"
        ) from None


def export_merged(adapter: Path, out: Path, threads: int = 0, overwrite: bool = False) -> Path:
    """Merge the LoRA weights into the base model and save a plain transformers model."""
    from engine.rundir.outputs import write_folder

    adapter = Path(adapter)
    load_adapter_config(adapter)
    out = output_folder(adapter, out, overwrite)
    task = _task_for(adapter)
    model, tokenizer = task.load_for_inference(adapter, threads)
    merged = model.merge_and_unload()

    def write(folder: Path) -> None:
        merged.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        for name in (METRICS_FILE, RUN_CONFIG_FILE):
            if (adapter / name).is_file():
                (folder / name).write_bytes((adapter / name).read_bytes())
        task.export_extras(folder, adapter, merged)

    try:
        return write_folder(out, None, write)
    except OSError as exc:
        raise UserError(
            f"cannot write the merged model ({exc})",
            where=str(out),
            hint="check the free space and permissions",
        ) from None
