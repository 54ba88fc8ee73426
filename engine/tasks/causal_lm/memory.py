"""Memory estimate of a causal-LM LoRA run from the model config alone (before loading weights),
and the choices made from it: gradient checkpointing on or off, the batch's token budget."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

RUNTIME_BYTES = 400 * 1024**2  # torch, transformers and the tokenizer, measured at start-up
# Bytes kept for backward per token and layer, per unit of each width, measured on the
# SmolLM2-135M shape in bf16 (eager attention, batch 12 x ~280 tokens: 53.6 KB per token and
# layer): ~36 per hidden unit (norm inputs and their fp32 copies, q/k/v, RoPE, residuals), 8 per
# MLP unit (gate, up, SiLU, product) and 8 per attention score (fp32 softmax and its bf16 copy).
PER_HIDDEN, PER_INTER, PER_SCORE = 36, 8, 8
# The same with engine.models.gqa_attention and engine.models.lean_norm (bf16 Llama/Qwen/Mistral):
# the saved tensors measured with saved_tensors_hooks (27.1 KB per token and layer at 256 tokens,
# 30.1 at 486: one bf16 copy of the probabilities, no fp32 norm copies, no repeat_kv), times the
# 1.3 that RSS adds over the saved tensors on the eager path.
LEAN_PER_HIDDEN, LEAN_PER_INTER, LEAN_PER_SCORE = 26, 10, 2
# fp32 keeps about four times bf16's bytes per token, not two (SmolLM2-135M shape with
# checkpointing, batch 12 x ~280 tokens: +3.6 GB over the loaded model against +1.1 GB).
FP32_FACTOR = 4
# With checkpointing: each layer's input stays, and one layer at a time is recomputed with its
# gradients (about three layers' worth of activations alive at once).
LAYERS_ALIVE = 3
# Auto checkpointing: on when the estimate without it is more than this share of the free RAM
# (room for the page cache, other runs and the estimate's own error).
FREE_SHARE = 0.5
# Auto checkpointing also bounds a step by design, so a small model trains in a small footprint
# next to other work: the larger of this and the longest batch with every layer checkpointed
# (shorter batches use what that leaves to skip recomputation: layer_checkpointing).
STEP_FLOOR = 2 * 1024**3


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


def decoder_widths(config: Any) -> tuple[int, int, int, int, int]:
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
    lean: bool = False,
    weights: int | None = None,
) -> MemoryEstimate:
    """Weights, LoRA state, activations and logits for a batch of `batch_size` x `length`
    (`lean`: the bf16 GQA attention and lean norms are in use; `weights`: the base's bytes when
    it is not stored at the compute precision, engine.tasks.causal_lm.base_precision)."""
    from engine.tasks.causal_lm.answer_logits import CHUNK_ELEMENTS

    hidden, layers, _, _, _ = decoder_widths(config)
    tokens = batch_size * length  # padding makes the longest row count
    per_layer = layer_bytes(config, batch_size, length, precision, lean)
    if checkpointing:
        inputs = tokens * layers * hidden * 2 * (1 if precision == "bf16" else FP32_FACTOR)
        activations = inputs + LAYERS_ALIVE * per_layer
    else:
        activations = layers * per_layer
    return MemoryEstimate(
        weights=n_params * (2 if precision == "bf16" else 4) if weights is None else weights,
        lora_state=lora_params * 4 * 4,
        activations=int(activations),
        logits=CHUNK_ELEMENTS * 12,  # bf16 logits, their fp32 copy, softmax and gradient
        checkpointing=checkpointing,
    )


def layer_bytes(config: Any, rows: int, length: int, precision: str, lean: bool = False) -> int:
    """Activations one decoder layer keeps for backward (without checkpointing) for a batch."""
    hidden, _, heads, inter, _ = decoder_widths(config)
    if lean:
        widths = LEAN_PER_HIDDEN * hidden + LEAN_PER_INTER * inter + LEAN_PER_SCORE * heads * length
    else:
        widths = PER_HIDDEN * hidden + PER_INTER * inter + PER_SCORE * heads * length
    return rows * length * widths * (1 if precision == "bf16" else FP32_FACTOR)


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


def estimate_for(
    cfg: Any,
    precision: str,
    length: int = 0,
    weights: int | None = None,
    rows_per_example: int = 1,
) -> MemoryEstimate:
    """The estimate for a configured model at `length` tokens (default: max_length or 512), with
    checkpointing as the setting or the auto rule decides (`weights`: a quantised base's bytes,
    engine.tasks.causal_lm.base_precision.base_weights_for; `rows_per_example`: 2 for pairs)."""
    from engine.models.loading import load_model_config, resolve_model_name

    config = load_model_config(
        resolve_model_name(cfg.model.model_name), cfg.model.trust_remote_code
    )
    n, lora = count_parameters(
        config, cfg.lora.target_modules, cfg.lora.lora_r, cfg.model.trust_remote_code
    )
    length = length or cfg.model.max_length or 512
    batch = cfg.batch_size_for(max_length=length) * rows_per_example
    lean = uses_lean_paths(config, precision, cfg.model.attention, length)

    def longest(ckpt: bool) -> MemoryEstimate:
        return estimate(config, n, lora, batch, length, precision, ckpt, lean, weights)

    setting = cfg.training.gradient_checkpointing
    on, why = decide_checkpointing(setting, longest)
    found = longest(on)
    if on and why:  # auto: shorter batches keep layers in the room under the step's bound
        from engine.core.hardware import free_memory_bytes
        from engine.tasks.causal_lm.layer_checkpointing import ROOM_SHARE

        room = max(0, step_bound(longest, free_memory_bytes()) - found.total) * ROOM_SHARE
        found = replace(found, activations=found.activations + int(room))
    return found


def uses_lean_paths(config: Any, precision: str, attention: str, length: int) -> bool:
    """Whether training will run engine.models.gqa_attention (and the lean norms)."""
    from engine.models.gqa_attention import SUPPORTED
    from engine.tasks.causal_lm.sizing import choose_causal_attention

    return (
        getattr(config, "model_type", None) in SUPPORTED
        and attention == "auto"
        and choose_causal_attention(attention, precision, length) == "eager"
    )


def step_bound(estimate_of: Any, free_bytes: int) -> int:
    """Bytes a step may take under auto checkpointing: the larger of STEP_FLOOR and the longest
    batch with every layer checkpointed, and never over FREE_SHARE of the free RAM."""
    return int(min(FREE_SHARE * free_bytes, max(estimate_of(True).total, STEP_FLOOR)))


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
    bound = step_bound(estimate_of, free_bytes)
    if without <= bound:
        return False, ""
    gb = 1024**3
    if bound == int(FREE_SHARE * free_bytes):
        limit = f"half the {free_bytes / gb:.1f} GB free"
    else:
        limit = f"the {bound / gb:.1f} GB a step may take"
    return True, (
        f"gradient checkpointing on (auto): a step without it may need {without / gb:.1f} GB, "
        f"more than {limit}; with it about {estimate_of(True).total / gb:.1f} GB"
    )


def decide_heap(
    setting: str, estimate_of: Any, free_bytes: int | None = None, checkpointing: bool = True
) -> tuple[str, str]:
    """(fast or lean, why) for a memory_mode setting; auto is lean when the step the run will
    take (with checkpointing: its bound, step_bound's floor included) is over FREE_SHARE of the
    free RAM, so the heap does not hold back what checkpointing saves. A step that only
    checkpoints to stay under STEP_FLOOR on a roomy machine keeps the fast heap."""
    if setting == "lean":
        return "lean", ""  # said once for every task at the run's start
    if setting != "auto":
        return "fast", ""
    if free_bytes is None:
        from engine.core.hardware import free_memory_bytes

        free_bytes = free_memory_bytes()
    step = estimate_of(checkpointing).total
    needed = max(step, STEP_FLOOR) if checkpointing else step
    if needed <= FREE_SHARE * free_bytes:
        return "fast", ""
    gb = 1024**3
    return "lean", (
        f"memory_mode lean (auto): a step may take {needed / gb:.1f} GB, more than half the "
        f"{free_bytes / gb:.1f} GB free; freed blocks go back at once"
    )
