"""Memory estimate of a causal-LM LoRA run from the model config alone (before loading weights),
and the choices made from it: gradient checkpointing on or off, the batch's token budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RUNTIME_BYTES = 400 * 1024**2  # torch, transformers and the tokenizer, measured at start-up
# Bytes kept for backward per token and layer, per unit of each width, measured on the
# SmolLM2-135M shape in bf16 (eager attention, batch 12 x ~280 tokens: 53.6 KB per token and
# layer): ~36 per hidden unit (norm inputs and their fp32 copies, q/k/v, RoPE, residuals), 8 per
# MLP unit (gate, up, SiLU, product) and 8 per attention score (fp32 softmax and its bf16 copy).
PER_HIDDEN, PER_INTER, PER_SCORE = 36, 8, 8
# With checkpointing: each layer's input stays, and one layer at a time is recomputed with its
# gradients (about three layers' worth of activations alive at once).
LAYERS_ALIVE = 3
# Auto checkpointing: on when the estimate without it is more than this share of the free RAM
# (room for the page cache, other runs and the estimate's own error).
FREE_SHARE = 0.5


@dataclass
class MemoryEstimate:
    """Bytes per part of a training step's peak, and their sum."""

    weights: int
    lora_state: int  # LoRA weights, their gradients and AdamW's two moments (fp32)
    activations: int  # saved for backward, across all layers
    logits: int  # one chunk of answer-position logits (engine.tasks.causal_lm.answer_logits)
    runtime: int = RUNTIME_BYTES
    checkpointing: bool = False

    @property
    def total(self) -> int:
        """The estimated peak."""
        return self.weights + self.lora_state + self.activations + self.logits + self.runtime

    def line(self) -> str:
        """One line: the total and its parts in GB."""
        gb = 1024**3
        ckpt = " (gradient checkpointing)" if self.checkpointing else ""
        return (
            f"memory estimate {self.total / gb:.2f} GB{ckpt} = weights {self.weights / gb:.2f} + "
            f"LoRA+optimizer {self.lora_state / gb:.3f} + activations {self.activations / gb:.2f} "
            f"+ logits {self.logits / gb:.2f} + runtime {self.runtime / gb:.2f}"
        )


def _widths(config: Any) -> tuple[int, int, int, int, int]:
    """(hidden, layers, heads, intermediate, vocabulary) of a decoder config."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = int(getattr(text, "hidden_size", 0) or getattr(text, "n_embd", 0) or 768)
    layers = int(getattr(text, "num_hidden_layers", 0) or getattr(text, "n_layer", 0) or 12)
    heads = int(getattr(text, "num_attention_heads", 0) or getattr(text, "n_head", 0) or 12)
    inter = int(getattr(text, "intermediate_size", 0) or getattr(text, "n_inner", 0) or 4 * hidden)
    vocab = int(getattr(text, "vocab_size", 0) or 32000)
    return hidden, layers, heads, inter, vocab


def estimate(
    config: Any,
    n_params: int,
    lora_params: int,
    batch_size: int,
    length: int,
    precision: str,
    checkpointing: bool,
) -> MemoryEstimate:
    """Weights, LoRA state, activations and logits for a batch of `batch_size` x `length`."""
    from engine.tasks.causal_lm.answer_logits import CHUNK_ELEMENTS

    hidden, layers, heads, inter, _ = _widths(config)
    # fp32 keeps about four times bf16's bytes per token, not two (SmolLM2-135M shape with
    # checkpointing, batch 12 x ~280 tokens: +3.6 GB over the loaded model against +1.1 GB).
    scale = 1 if precision == "bf16" else 4
    tokens = batch_size * length  # padding makes the longest row count
    per_layer = tokens * (PER_HIDDEN * hidden + PER_INTER * inter + PER_SCORE * heads * length)
    if checkpointing:
        activations = tokens * layers * hidden * 2 + LAYERS_ALIVE * per_layer
    else:
        activations = layers * per_layer
    return MemoryEstimate(
        weights=n_params * (2 if precision == "bf16" else 4),
        lora_state=lora_params * 4 * 4,
        activations=int(activations * scale),
        logits=CHUNK_ELEMENTS * 12,  # bf16 logits, their fp32 copy, softmax and gradient
        checkpointing=checkpointing,
    )


def count_parameters(config: Any, target_setting: str, lora_r: int, trust: bool) -> tuple[int, int]:
    """(model parameters, LoRA parameters) of a config, built on the meta device (no weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    from engine.tasks.causal_lm.targets import choose_decoder_targets

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust)
    n_params = sum(p.numel() for p in model.parameters())
    targets = set(choose_decoder_targets(model, target_setting))
    lora = 0
    for name, module in model.named_modules():
        if name.split(".")[-1] in targets and any(p.isdigit() for p in name.split(".")):
            w = module.weight
            lora += lora_r * (w.shape[0] + w.shape[1])
    return n_params, lora


def estimate_for(cfg: Any, precision: str, length: int = 0) -> MemoryEstimate:
    """The estimate for a configured model at `length` tokens (default: max_length or 512), with
    checkpointing as the setting or the auto rule decides."""
    from engine.models.loading import load_model_config, resolve_model_name

    config = load_model_config(
        resolve_model_name(cfg.model.model_name), cfg.model.trust_remote_code
    )
    n, lora = count_parameters(
        config, cfg.lora.target_modules, cfg.lora.lora_r, cfg.model.trust_remote_code
    )
    length = length or cfg.model.max_length or 512
    batch = cfg.batch_size_for(max_length=length)
    on, _ = decide_checkpointing(
        cfg.training.gradient_checkpointing,
        lambda ckpt: estimate(config, n, lora, batch, length, precision, ckpt),
    )
    return estimate(config, n, lora, batch, length, precision, on)


def decide_checkpointing(
    setting: Any, estimate_of: Any, free_bytes: int | None = None
) -> tuple[bool, str]:
    """(on, why) for a gradient_checkpointing setting; `estimate_of(on)` gives a MemoryEstimate."""
    text = str(setting).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True, ""
    if text in ("false", "0", "no", "off"):
        return False, ""
    if free_bytes is None:
        from engine.core.hardware import free_memory_bytes

        free_bytes = free_memory_bytes()
    without = estimate_of(False).total
    if without <= FREE_SHARE * free_bytes:
        return False, ""
    gb = 1024**3
    return True, (
        f"gradient checkpointing on (auto): a step without it may need {without / gb:.1f} GB, "
        f"more than half the {free_bytes / gb:.1f} GB free; with it about "
        f"{estimate_of(True).total / gb:.1f} GB"
    )
