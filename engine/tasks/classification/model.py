"""The sequence-classification model: our label map on the config, a head trained anew."""

from __future__ import annotations

from typing import Any

from engine.models.loading import base_config, choose_attention, load_pretrained


def build_classifier(
    cfg: Any, id2label: dict[int, str], precision: str, name: str, tokenizer: Any
) -> tuple[Any, str]:
    """Load the base model as a sequence classifier with our labels, dropout and attention."""
    from transformers import AutoModelForSequenceClassification

    config = base_config(cfg, name, tokenizer)
    config.num_labels = len(id2label)
    config.id2label = {int(i): str(v) for i, v in id2label.items()}
    config.label2id = {str(v): int(i) for i, v in id2label.items()}
    return load_pretrained(
        AutoModelForSequenceClassification,
        name,
        config,
        cfg,
        choose_attention(cfg, precision),
        # A model fine-tuned before may have a head of another size; ours is trained anew anyway.
        ignore_mismatched_sizes=True,
    )
