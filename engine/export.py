"""Save what a run produced: the adapter folder (peft layout + label map + card) and merged models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from engine.config import RunConfig
from engine.errors import UserError

LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"
RUN_CONFIG_FILE = "run_config.toml"
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
    model: Any,
    tokenizer: Any,
    out: Path,
    cfg: RunConfig,
    id2label: dict[int, str],
    metrics: dict[str, Any],
    base_name: str,
    run_dir: Path | None = None,
) -> Path:
    """Write the adapter so plain peft loads it: adapter, base config with labels, tokenizer, card.

    Files are written in a staging folder and renamed into `out` (see engine.outputs), which
    is marked as written by the run in `run_dir`.
    """
    from engine.outputs import write_folder

    def write(folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True)
        # The base config with our label map, so AutoPeftModelForSequenceClassification gets
        # num_labels.
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        base.config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        labels = {str(i): name for i, name in sorted(id2label.items())}
        (folder / LABELS_FILE).write_text(
            json.dumps({"id2label": labels}, indent=2), encoding="utf-8"
        )
        (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        cfg.save(folder / RUN_CONFIG_FILE)
        (folder / "README.md").write_text(
            model_card(cfg, base_name, id2label, metrics), encoding="utf-8"
        )

    return write_folder(out, run_dir, write)


def model_card(
    cfg: RunConfig,
    base_name: str,
    id2label: dict[int, str],
    metrics: dict[str, Any],
    merged: bool = False,
) -> str:
    """A short model card: base model, data, settings, metrics, how to load."""
    lo, t = cfg.lora, cfg.training
    scores = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float)) or "n/a"
    load = (
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n"
        "model = AutoModelForSequenceClassification.from_pretrained(PATH)\n"
        "tokenizer = AutoTokenizer.from_pretrained(PATH)"
        if merged
        else "from peft import AutoPeftModelForSequenceClassification\n"
        "from transformers import AutoTokenizer\n"
        f"id2label = {dict(sorted(id2label.items()))!r}\n"
        "# Give the label count and names: peft builds the base model from the base's config.\n"
        "model = AutoPeftModelForSequenceClassification.from_pretrained(\n"
        "    PATH, num_labels=len(id2label), id2label=id2label,\n"
        "    label2id={v: k for k, v in id2label.items()}, ignore_mismatched_sizes=True)\n"
        "tokenizer = AutoTokenizer.from_pretrained(PATH)"
    )
    return f"""---
library_name: {"transformers" if merged else "peft"}
base_model: {base_name}
pipeline_tag: text-classification
---
# {"Merged" if merged else "LoRA adapter"}: {Path(base_name).name} fine-tuned for text classification

Made with finetune-tui on a CPU.

- Base model: `{base_name}`
- Data: `{cfg.data.data_file_path or "bundled example reviews"}` (text column `{cfg.data.text_column or "auto"}`, label column `{cfg.data.label_column or "auto"}`)
- Labels: {", ".join(f"{i} = {n}" for i, n in sorted(id2label.items()))}
- LoRA: r={lo.lora_r}, alpha={lo.lora_alpha}, dropout={lo.lora_dropout}, targets={lo.target_modules}, DoRA={lo.use_dora}, rsLoRA={lo.use_rslora}
- Training: epochs={t.epochs}, batch={t.batch_size}x{t.grad_accum}, lr={t.learning_rate}, precision={t.precision}, max_length={cfg.model.max_length}
- Evaluation: {scores}

## Load
```python
{load}
```
"""


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
        if not (folder / LABELS_FILE).is_file():  # a checkpoint: keep the label map with it
            from engine.predict import _labels_for

            labels = _labels_for(adapter)
            if labels:
                (folder / LABELS_FILE).write_text(
                    json.dumps(
                        {"id2label": {str(i): n for i, n in sorted(labels.items())}}, indent=2
                    ),
                    encoding="utf-8",
                )

    try:
        return write_folder(out, None, write)
    except (OSError, shutil.Error) as exc:
        raise UserError(
            f"copy failed ({exc})", where=str(out), hint="check the free space and permissions"
        ) from None


def export_merged(adapter: Path, out: Path, threads: int = 0, overwrite: bool = False) -> Path:
    """Merge the LoRA weights into the base model and save a plain transformers model."""
    from engine.outputs import write_folder
    from engine.predict import load_classifier

    adapter = Path(adapter)
    load_adapter_config(adapter)
    out = output_folder(adapter, out, overwrite)
    model, tokenizer = load_classifier(adapter, threads)
    merged = model.merge_and_unload()
    cfg_path = adapter / RUN_CONFIG_FILE
    cfg = RunConfig.load(cfg_path) if cfg_path.is_file() else RunConfig()
    metrics_path = adapter / METRICS_FILE
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    id2label = {int(k): v for k, v in merged.config.id2label.items()}
    base = load_adapter_config(adapter).get("base_model_name_or_path", "")

    def write(folder: Path) -> None:
        merged.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        (folder / "README.md").write_text(
            model_card(cfg, base, id2label, metrics, merged=True), encoding="utf-8"
        )
        for name in (LABELS_FILE, METRICS_FILE):
            if (adapter / name).is_file():
                (folder / name).write_bytes((adapter / name).read_bytes())

    try:
        return write_folder(out, None, write)
    except OSError as exc:
        raise UserError(
            f"cannot write the merged model ({exc})",
            where=str(out),
            hint="check the free space and permissions",
        ) from None
