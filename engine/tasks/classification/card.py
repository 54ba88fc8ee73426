"""The classification adapter's extras: label map, base config with labels, model card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.config import RunConfig

LABELS_FILE = "labels.json"


def write_labels(out: Path, id2label: dict[int, str]) -> None:
    """Save the label map as `labels.json`."""
    labels = {str(i): name for i, name in sorted(id2label.items())}
    (out / LABELS_FILE).write_text(json.dumps({"id2label": labels}, indent=2), encoding="utf-8")


def base_model_id(cfg: RunConfig, base_name: str) -> str:
    """The base model as others can find it: a hub id when there is one, not a local path."""
    from engine.models.loading import DEFAULT_HUB_ID, OFFLINE_PACKAGE, model_label

    given = cfg.model.model_name.strip()
    parts = base_name.replace("\\", "/").split("/")
    if not given or OFFLINE_PACKAGE in parts:
        return DEFAULT_HUB_ID  # the bundled offline copy of the default model
    if given and not Path(given).expanduser().exists() and given.count("/") <= 1:
        return given  # a hub id as the user gave it
    return model_label(base_name)


def model_card(
    cfg: RunConfig,
    base_name: str,
    id2label: dict[int, str],
    metrics: dict[str, Any],
    merged: bool = False,
    columns: tuple[str, str] = ("", ""),
) -> str:
    """A short model card: base model, data, settings, metrics, how to load.

    `columns` are the text and label columns used (detected ones included)."""
    lo, t = cfg.lora, cfg.training
    text_col = columns[0] or cfg.data.text_column or "auto"
    label_col = columns[1] or cfg.data.label_column or "auto"
    base_id = base_model_id(cfg, base_name)
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
base_model: {base_id}
pipeline_tag: text-classification
---
# {"Merged" if merged else "LoRA adapter"}: {base_id.split("/")[-1]} fine-tuned for text classification

Made with finetune-tui on a CPU.

- Base model: `{base_id}`{f" (loaded from `{base_name}`)" if base_name and base_name != base_id else ""}
- Data: `{cfg.data.data_file_path or "bundled example reviews"}` (text column `{text_col}`, label column `{label_col}`)
- Labels: {", ".join(f"{i} = {n}" for i, n in sorted(id2label.items()))}
- LoRA: r={lo.lora_r}, alpha={lo.lora_alpha}, dropout={lo.lora_dropout}, targets={lo.target_modules}, DoRA={lo.use_dora}, rsLoRA={lo.use_rslora}
- Training: epochs={t.epochs}, batch={t.batch_size}x{t.grad_accum}, lr={t.learning_rate}, precision={t.precision}, max_length={cfg.model.max_length or "auto (128)"}
- Evaluation: {scores}

## Load
```python
{load}
```
"""
