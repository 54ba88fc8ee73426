"""The classification task's LoRA model as training loads it, for the model and speed-path tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.config import RunConfig


def classifier_for_training(cfg: RunConfig, precision: str) -> Any:
    """The classification task's model (labels neg / pos) with LoRA, as training loads it."""
    from engine.tasks.base import TaskData
    from engine.tasks.classification import ClassificationTask

    data = TaskData([], None, "none", {"id2label": {0: "neg", 1: "pos"}})
    return ClassificationTask().load_model(cfg, data, precision)


def load_seeded(tiny_model: Path, precision: str, fuse: bool = True, **settings: Any) -> Any:
    """The tiny model with LoRA on every layer (unless `settings` say otherwise), B made non-zero
    (so A gets gradients too), seeded; `fuse=False` keeps peft's own LoRA layers."""
    import torch
    from transformers import set_seed

    from engine.models import fused_lora

    cfg = RunConfig()
    cfg.model.model_name = str(tiny_model)
    cfg.model.attention = "eager"
    settings.setdefault("lora_layers", 1.0)  # not auto: these tests compare every layer
    for key, value in settings.items():
        cfg.set(key, value)
    set_seed(0)
    real = fused_lora.fuse_lora_layers
    if not fuse:
        fused_lora.fuse_lora_layers = lambda model: 0
    try:
        loaded = classifier_for_training(cfg, precision)
    finally:
        fused_lora.fuse_lora_layers = real
    for name, param in loaded.model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02, generator=torch.Generator().manual_seed(1))
    return loaded
