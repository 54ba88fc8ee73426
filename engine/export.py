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
    loaded: Any,
    out: Path,
    cfg: RunConfig,
    metrics: dict[str, Any],
    task: Any,
    data: Any,
    run_dir: Path | None = None,
) -> Path:
    """Write the adapter so plain peft loads it, with the tokenizer, config, metrics and extras.

    Files are written in a staging folder and renamed into `out` (engine.outputs), which is
    then marked as written by the run in `run_dir`.
    """
    from engine.outputs import write_folder

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
    from engine.outputs import check_output_dir

    out = Path(out).expanduser()
    if out.exists() and out.resolve() == Path(adapter).resolve():
        raise UserError(
            "the destination is the adapter folder itself",
            where=str(out),
            hint="choose another folder",
        )
    return check_output_dir(out, overwrite=overwrite, what="export")


def _task_for(folder: Path) -> Any:
    from engine.predict import task_of
    from engine.tasks import get_task

    return get_task(task_of(folder))


def copy_adapter(adapter: Path, out: Path, overwrite: bool = False) -> Path:
    """Copy an adapter folder (without a checkpoint's optimizer state) to `out`."""
    from engine.outputs import MARKER, write_folder

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
    from engine.outputs import write_folder

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
