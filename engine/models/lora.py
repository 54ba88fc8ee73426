"""Wrap a loaded model with LoRA: which linears, which layers, what to save, and the speed-ups."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.core.errors import UserError
from engine.models.loading import (
    LoadedModel,
    check_model_source,
    load_tokenizer,
    resolve_model_name,
)

HEAD_NAMES = ("classifier", "score", "pre_classifier", "out_proj")


# Attention projections to adapt, per architecture family, in order of preference.
AUTO_TARGETS: tuple[tuple[str, ...], ...] = (
    ("query", "value"),  # BERT, RoBERTa, MiniLM, ELECTRA
    ("q_lin", "v_lin"),  # DistilBERT
    ("query_proj", "value_proj"),  # DeBERTa-v2/v3
    ("q_proj", "v_proj"),  # Llama, Mistral, Qwen, OPT, BART
    ("c_attn",),  # GPT-2
    ("query_key_value",),  # Falcon, BLOOM, GPT-NeoX
    ("Wqkv",),  # ModernBERT, MPT
    ("qkv_proj",),  # Phi-3
    ("q", "v"),  # T5
)


AUTO_SAVE = ("classifier", "score", "pre_classifier", "pooler")


def linear_kinds() -> tuple[type, ...]:
    """The layer classes LoRA can adapt: torch Linear and GPT-2's Conv1D."""
    import torch

    kinds: tuple[type, ...] = (torch.nn.Linear,)
    try:
        from transformers.pytorch_utils import Conv1D

        kinds += (Conv1D,)
    except ImportError:  # pragma: no cover
        pass
    return kinds


def linear_module_names(model: Any) -> list[str]:
    """Distinct leaf names of the linear layers LoRA can adapt (the head excluded)."""
    kinds = linear_kinds()
    names: dict[str, None] = {}
    for full, module in model.named_modules():
        if isinstance(module, kinds):
            parts = full.split(".")
            if any(p in HEAD_NAMES or p == "pooler" for p in parts):
                continue
            names[parts[-1]] = None
    return list(names)


def choose_targets(model: Any, setting: str) -> list[str]:
    """Resolve 'auto', 'all-linear' or a comma list to module names present in the model."""
    present = linear_module_names(model)
    wanted = [s.strip() for s in setting.split(",") if s.strip()]
    if wanted == ["auto"]:
        for group in AUTO_TARGETS:
            if all(name in present for name in group):
                return list(group)
        return present
    if wanted == ["all-linear"]:
        return present
    return require_present(wanted, present)


def require_present(
    wanted: list[str], present: list[str], what: str = "linear modules"
) -> list[str]:
    """The wanted target names, or a UserError listing the ones this model has."""
    missing = [w for w in wanted if w not in present]
    if missing:
        raise UserError(
            f"target modules not in this model: {', '.join(missing)}",
            where="lora.target_modules",
            hint=f"{what} here: " + ", ".join(present[:30]) + " (or use 'auto')",
            field="lora.target_modules",
        )
    return wanted


def choose_modules_to_save(
    model: Any, setting: str, auto: tuple[str, ...] = AUTO_SAVE
) -> list[str]:
    """Modules trained in full: 'auto' = the task's choice (a classifier's head and pooler)."""
    leaf = {n.split(".")[-1] for n, _ in model.named_modules()}
    if setting.strip() == "auto":
        return [n for n in auto if n in leaf]
    if setting.strip() in ("", "none"):
        return []
    wanted = [s.strip() for s in setting.split(",") if s.strip()]
    missing = [w for w in wanted if w not in leaf]
    if missing:
        raise UserError(
            f"modules_to_save not in this model: {', '.join(missing)}",
            where="lora.modules_to_save",
            hint="use 'auto' (the classifier head)",
            field="lora.modules_to_save",
        )
    return wanted


def layer_count(model: Any) -> int:
    """How many transformer layers (blocks) the model has (0 when its config does not say)."""
    config = getattr(model, "config", None)
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return 0


# lora_layers = 0 (auto): a share of the layers by training rows, measured on MiniLM-L6 / SST-2,
# 1 epoch, against the plain docs recipe (bench/speed.py, docs/benchmarks.md). On 2,000 rows
# the top third scores 79.5% (plain recipe 77.3%) and is the fastest; on 20,000 it scores 84.5%
# against the plain recipe's 85.4%, where the top half reaches 86% (at batch 16); the full 67,349
# rows need every layer for 88% (the top third ended at 85.2%).
AUTO_TOP_SHARE = 1 / 3


AUTO_HALF_FROM_ROWS = 10_000
AUTO_EVERY_LAYER_FROM_ROWS = 50_000


def effective_lora_layers(setting: float, train_rows: int) -> float:
    """The share of layers to adapt: the setting, or for 0 (auto) a choice by data size."""
    if setting > 0:
        return setting
    if train_rows >= AUTO_EVERY_LAYER_FROM_ROWS:
        return 1.0
    return 0.5 if train_rows >= AUTO_HALF_FROM_ROWS else AUTO_TOP_SHARE


def describe_layers(model: Any, share: float) -> str:
    """'top 2 of 6 layers' or 'every layer', for the run's log."""
    top = top_layer_indices(model, share)
    return "every layer" if top is None else f"top {len(top)} of {layer_count(model)} layers"


def top_layer_indices(model: Any, share: float) -> list[int] | None:
    """Indices of the top `share` of the layers for peft's layers_to_transform (None = all)."""
    import math

    total = layer_count(model)
    top = max(1, math.ceil(share * total - 1e-9))
    if share >= 1 or not total or top >= total:
        return None
    return list(range(total - top, total))


def apply_lora(
    model: Any,
    cfg: Any,
    task_type: str = "SEQ_CLS",
    auto_save: tuple[str, ...] = AUTO_SAVE,
    layer_share: float = 1.0,
) -> tuple[Any, list[str], list[str]]:
    """Wrap the model with a LoRA adapter as configured (peft task type of the task).

    With `layer_share` < 1, only the top layers are adapted: nothing below them trains, and as
    the inputs (embeddings) do not require grad either, autograd never goes down there.
    """
    from peft import LoraConfig, TaskType, get_peft_model

    lo = cfg.lora
    targets = choose_targets(model, lo.target_modules)
    to_save = choose_modules_to_save(model, lo.modules_to_save, auto_save)
    layers = top_layer_indices(model, layer_share)
    lora_config = LoraConfig(
        task_type=TaskType(task_type),
        r=lo.lora_r,
        lora_alpha=lo.lora_alpha,
        lora_dropout=lo.lora_dropout,
        target_modules=targets,
        modules_to_save=list(to_save) or None,  # peft appends to it
        use_dora=lo.use_dora,
        use_rslora=lo.use_rslora,
        fan_in_fan_out="c_attn" in targets,
        layers_to_transform=layers,
    )
    return get_peft_model(model, lora_config), targets, to_save


def store_frozen_linears_in_bf16(model: Any) -> int:
    """Keep frozen linear layers in bf16 so autocast stops re-casting them on every step.

    Autocast would round these weights to bf16 for each matmul anyway, so the numbers are the
    same; what goes is a copy of every weight per forward pass. Trainable parts (LoRA, the head)
    stay fp32. Returns how many layers were converted.
    """
    import torch

    count = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear and not any(
            p.requires_grad for p in module.parameters()
        ):
            module.to(torch.bfloat16)
            count += 1
    return count


def keep_lora_inputs_in_bf16(model: Any) -> None:
    """Stop peft casting bf16 activations to the fp32 LoRA weights' dtype in each layer.

    Under autocast the LoRA matmuls run in bf16 anyway, so that fp32 copy was cast straight
    back: two copies per adapted layer per pass, for identical numbers. Only for autocast use.
    """
    for module in model.modules():
        if hasattr(module, "cast_input_dtype_enabled"):
            module.cast_input_dtype_enabled = False


def speed_up(model: Any, cfg: Any, precision: str) -> None:
    """The speed paths for a LoRA model about to train in bf16: bf16 storage, fused LoRA layers."""
    if cfg.lora.use_dora:
        return
    from engine.models.fused_lora import fuse_lora_layers

    if precision == "bf16":
        store_frozen_linears_in_bf16(model)
        keep_lora_inputs_in_bf16(model)
        # fp32 works too (tests/engine/models/test_speed_paths.py) but was not measured faster there (CHANGELOG.md).
        fuse_lora_layers(model)


def load_for_training(
    cfg: Any,
    precision: str,
    build_base: Callable[[str, Any], tuple[Any, str]],
    task_type: str,
    auto_save: tuple[str, ...] = (),
    train_rows: int = 0,
) -> LoadedModel:
    """Tokenizer + the task's base model (`build_base(name, tokenizer)`) + LoRA, per the config."""
    name = resolve_model_name(cfg.model.model_name)
    check_model_source(name, cfg.model.allow_pickle_weights)
    tokenizer = load_tokenizer(name, cfg.model.trust_remote_code)
    model, attention = build_base(name, tokenizer)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    # A head that ignores num_items_in_batch averages per micro-batch; letting the Trainer pass
    # it would scale the logged loss (not the gradient) by grad_accum x world size
    # (transformers#47688). Tasks whose loss does use it set the flag back.
    model.accepts_loss_kwargs = False
    share = effective_lora_layers(cfg.lora.lora_layers, train_rows)
    layers = describe_layers(model, share)
    model, targets, to_save = apply_lora(model, cfg, task_type, auto_save, share)
    speed_up(model, cfg, precision)
    return LoadedModel(model, tokenizer, name, targets, to_save, attention, layers)
