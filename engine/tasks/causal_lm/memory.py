"""Memory estimate of a causal-LM LoRA run from the model config alone (before loading weights)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RUNTIME_BYTES = 400 * 1024**2  # torch, transformers and the tokenizer, measured at start-up


@dataclass
class MemoryEstimate:
    """Bytes per part of a training step's peak, and their sum."""

    weights: int
    lora_state: int  # LoRA weights, their gradients and AdamW's two moments (fp32)
    activations: int  # saved for backward, across all layers
    logits: int  # the vocabulary-wide logits, their softmax and gradient
    runtime: int = RUNTIME_BYTES

    @property
    def total(self) -> int:
        """The estimated peak."""
        return self.weights + self.lora_state + self.activations + self.logits + self.runtime

    def line(self) -> str:
        """One line: the total and its parts in GB."""
        gb = 1024**3
        return (
            f"memory estimate {self.total / gb:.2f} GB = weights {self.weights / gb:.2f} + "
            f"LoRA+optimizer {self.lora_state / gb:.3f} + activations {self.activations / gb:.2f} "
            f"+ logits {self.logits / gb:.2f} + runtime {self.runtime / gb:.2f}"
        )


def estimate(
    config: Any, n_params: int, lora_params: int, cfg: Any, precision: str
) -> MemoryEstimate:
    """Weights, LoRA state, activations and logits for `cfg`'s batch and max_length."""
    t = cfg.training
    half = precision == "bf16"
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = int(getattr(text, "hidden_size", 0) or getattr(text, "n_embd", 0) or 768)
    layers = int(getattr(text, "num_hidden_layers", 0) or getattr(text, "n_layer", 0) or 12)
    heads = int(getattr(text, "num_attention_heads", 0) or getattr(text, "n_head", 0) or 12)
    inter = int(getattr(text, "intermediate_size", 0) or getattr(text, "n_inner", 0) or 4 * hidden)
    vocab = int(getattr(text, "vocab_size", 0) or 32000)
    tokens = t.batch_size * cfg.model.max_length  # padding makes the longest row count
    act = 2 if half else 4
    # Per layer and token: the inputs of every projection, norms, the MLP's wide activations,
    # and the attention scores (heads x length) kept for backward. Checkpointing keeps only
    # each layer's input and recomputes one layer at a time.
    per_token = 10 * hidden + 3 * inter + 2 * heads * cfg.model.max_length
    if getattr(t, "gradient_checkpointing", False):
        activations = tokens * (layers * hidden + per_token) * act
    else:
        activations = tokens * layers * per_token * act
    return MemoryEstimate(
        weights=n_params * (2 if half else 4),
        lora_state=lora_params * 4 * 4,
        activations=int(activations),
        logits=tokens * vocab * 4 * 3,
    )


def estimate_for(cfg: Any, precision: str) -> MemoryEstimate:
    """The estimate for a configured model, built on the meta device (no weights are read)."""
    import torch
    from transformers import AutoModelForCausalLM

    from engine.model import load_model_config, resolve_model_name
    from engine.tasks.causal_lm.modeling import choose_decoder_targets

    config = load_model_config(
        resolve_model_name(cfg.model.model_name), cfg.model.trust_remote_code
    )
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(
            config, trust_remote_code=cfg.model.trust_remote_code
        )
    n_params = sum(p.numel() for p in model.parameters())
    targets = set(choose_decoder_targets(model, cfg.lora.target_modules))
    lora = 0
    for name, module in model.named_modules():
        if name.split(".")[-1] in targets and any(p.isdigit() for p in name.split(".")):
            w = module.weight
            lora += cfg.lora.lora_r * (w.shape[0] + w.shape[1])
    return estimate(config, n_params, lora, cfg, precision)
