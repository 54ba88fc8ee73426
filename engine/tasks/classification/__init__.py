"""Text classification: texts with int or string labels -> a LoRA adapter with a trained head."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from engine.tasks.base import Encoded, MetricHooks, Task, TaskData

AUTO_SAVE = ("classifier", "score", "pre_classifier", "pooler")
# None = by precision (engine.core.hardware.pad_multiple); bench/speed.py's "@pad8" sets one to compare.
PAD_MULTIPLE: int | None = None
# The last layer on the first token only, where the head reads nothing else
# (engine.models.first_token); bench/speed.py's "@full-last-layer" turns it off to compare.
FIRST_TOKEN_ONLY = True


class ClassificationTask(Task):
    """Sequence classification (sentiment, intent, topic...): accuracy, macro-F1, confusion."""

    name: ClassVar[str] = "classification"
    title: ClassVar[str] = "Text classification"
    peft_task_type: ClassVar[str] = "SEQ_CLS"

    def prepare_data(self, cfg: Any, run_dir: Path | None) -> TaskData:
        """Texts and label ids per split, the label names, and where evaluation comes from."""
        from engine.rundir.runs import data_cache_dir
        from engine.tasks.classification.data import load_splits

        cache = data_cache_dir(run_dir)
        splits = load_splits(cfg.data, seed=cfg.training.seed, cache_dir=cache)
        return TaskData(
            train=splits.train_texts,
            eval=splits.eval_texts or None,
            eval_source=splits.eval_source,
            info={"splits": splits, "id2label": splits.id2label},
        )

    def subset(self, data: TaskData, indices: list[int]) -> TaskData:
        """The given training rows only, without evaluation."""
        import dataclasses

        splits = data.info["splits"]
        picked = dataclasses.replace(
            splits,
            train_texts=[splits.train_texts[i] for i in indices],
            train_labels=[splits.train_labels[i] for i in indices],
            eval_texts=[],
            eval_labels=[],
            eval_source="none",
        )
        return TaskData(picked.train_texts, None, "none", {**data.info, "splits": picked})

    def load_model(self, cfg: Any, data: TaskData, precision: str) -> Any:
        """The base model as a classifier with our labels, wrapped with LoRA (head trained in full)."""
        from engine.models.lora import load_for_training
        from engine.tasks.classification.model import build_classifier

        id2label = data.info["id2label"]
        loaded = load_for_training(
            cfg,
            precision,
            lambda name, tok: build_classifier(cfg, id2label, precision, name, tok),
            self.peft_task_type,
            AUTO_SAVE,
            train_rows=_train_rows(data),
        )
        if FIRST_TOKEN_ONLY:
            from engine.models.first_token import last_layer_first_token_only

            last_layer_first_token_only(loaded.model)
        return loaded

    def encode(self, cfg: Any, data: TaskData, tokenizer: Any, run_dir: Path | None) -> Encoded:
        """Token ids of both splits, cached in the run directory."""
        from engine.config import CLASSIFICATION_MAX_LENGTH
        from engine.models.loading import resolve_model_name
        from engine.tasks.classification.encoding import encode, encode_cached

        splits = data.info["splits"]
        name = resolve_model_name(cfg.model.model_name)
        max_length = cfg.model.max_length or CLASSIFICATION_MAX_LENGTH

        def one(split: str, texts: list[str], labels: list[int]) -> tuple[Any, bool]:
            if run_dir is None:
                return encode(tokenizer, texts, labels, max_length), False
            return encode_cached(run_dir, split, tokenizer, name, texts, labels, max_length)

        train, hit = one("train", splits.train_texts, splits.train_labels)
        evals = None
        if splits.eval_texts:
            evals, _ = one("eval", splits.eval_texts, splits.eval_labels)
        return Encoded(train, evals, hit)

    def collator(self, cfg: Any, tokenizer: Any) -> Callable[[list[dict[str, Any]]], Any]:
        """Dynamic padding: to the longest text of each batch (fp32) or a multiple of 8 (bf16)."""
        from transformers import DataCollatorWithPadding

        from engine.core.hardware import pad_multiple, resolve_precision

        multiple = PAD_MULTIPLE or pad_multiple(resolve_precision(cfg.training.precision))
        return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)

    def metric_hooks(self, cfg: Any, data: TaskData, tokenizer: Any) -> MetricHooks:
        """Accuracy and macro-F1 for the Trainer; per-class figures and confusion kept as detail."""
        id2label = data.info["id2label"]
        hooks = MetricHooks()

        def compute_metrics(pred: Any) -> dict[str, float]:
            import numpy as np

            from engine.tasks.classification.metrics import classification_metrics

            logits = pred.predictions
            logits = logits[0] if isinstance(logits, tuple) else logits
            result = classification_metrics(pred.label_ids, np.argmax(logits, axis=-1), id2label)
            hooks.detail.clear()
            hooks.detail.update({k: v for k, v in result.items() if not isinstance(v, float)})
            return {k: v for k, v in result.items() if isinstance(v, float)}

        hooks.compute_metrics = compute_metrics
        return hooks

    def started_fields(self, data: TaskData) -> dict[str, Any]:
        """The label names, in id order."""
        id2label = data.info["id2label"]
        return {"labels": [id2label[i] for i in sorted(id2label)]}

    def data_summary(self, data: TaskData) -> dict[str, Any]:
        """The text and label columns found and the examples per label."""
        splits = data.info["splits"]
        return {
            "text_column": splits.text_column,
            "label_column": splits.label_column,
            "label_counts": splits.label_counts,
        }

    def save_extras(
        self, out: Path, loaded: Any, cfg: Any, data: TaskData, metrics: dict[str, Any]
    ) -> None:
        """The base config with our labels (so peft's Auto class gets num_labels), labels, card."""
        from engine.tasks.classification.card import model_card, write_labels

        id2label = data.info["id2label"]
        model = loaded.model
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        base.config.save_pretrained(out)
        write_labels(out, id2label)
        splits = data.info.get("splits")
        columns = (splits.text_column, splits.label_column) if splits is not None else ("", "")
        card = model_card(cfg, loaded.name, id2label, metrics, columns=columns)
        (out / "README.md").write_text(card, encoding="utf-8")

    def export_extras(self, out: Path, source: Path, merged: Any | None) -> None:
        """A merged model gets its own card; a copied checkpoint keeps the label map."""
        import json

        from engine.config import RunConfig
        from engine.rundir.adapters import METRICS_FILE, load_adapter_config
        from engine.rundir.weights import RUN_CONFIG_FILE
        from engine.tasks.classification.card import LABELS_FILE, model_card, write_labels
        from engine.tasks.classification.predict import labels_for

        if merged is None:
            if not (out / LABELS_FILE).is_file():
                labels = labels_for(source)
                if labels:
                    write_labels(out, labels)
            return
        cfg_path = source / RUN_CONFIG_FILE
        cfg = RunConfig.load(cfg_path) if cfg_path.is_file() else RunConfig()
        metrics_path = source / METRICS_FILE
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        id2label = {int(k): v for k, v in merged.config.id2label.items()}
        base = load_adapter_config(source).get("base_model_name_or_path", "")
        card = model_card(cfg, base, id2label, metrics, merged=True)
        (out / "README.md").write_text(card, encoding="utf-8")
        write_labels(out, id2label)

    def load_for_inference(self, folder: Path, threads: int = 0) -> tuple[Any, Any]:
        """(model, tokenizer) with the run's label names."""
        from engine.tasks.classification.predict import load_classifier

        return load_classifier(folder, threads)

    def meta_model(self, config: Any, trust_remote_code: bool = False) -> Any:
        """A sequence classifier built from the config."""
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_config(
            config, trust_remote_code=trust_remote_code
        )


def _train_rows(data: TaskData) -> int:
    """How many training rows the data has (0 when it carries no splits, as in a preview)."""
    splits = data.info.get("splits")
    return len(splits.train_texts) if splits is not None else 0
