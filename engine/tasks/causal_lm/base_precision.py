"""How the frozen base is stored (base_precision): the bytes each choice takes, auto's choice
from the memory estimate, and the largest model that fits this machine at each choice."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

QUANTISED = ("int8", "int4")
# A 3B-8B decoder keeps ~90% of its parameters in the block linears (and an untied head) that
# int8 / int4 store (Llama-3.2-3B 88%, Llama-3.1-8B 93%); the rest (embeddings, norms) stays at
# the compute precision. Used for the 'fits here' line, which has no model to count.
TYPICAL_QUANTISED_SHARE = 0.9
INT4_BYTES = 0.5 + 4 / 64  # packed values and one fp32 scale per group of 64
# What the 'fits here' line leaves for everything but the weights (runtime, activations of a
# 2 x 512 step with checkpointing, LoRA state): measured 1.2-1.9 GB over the weights on the
# 3B and 8B shapes in int8 (bench/big_base.py).
STEP_ALLOWANCE = 2 * 1024**3


@dataclass
class WeightSplit:
    """A model's parameters: those int8 / int4 would store, their bytes there, and the rest."""

    quantisable: int
    int8_bytes: int
    int4_bytes: int
    other: int

    def bytes_for(self, base: str) -> int:
        """Bytes of the base's weights stored as `base` (fp32, bf16, int8 or int4)."""
        if base == "int8":
            return self.int8_bytes + self.other * 4
        if base == "int4":
            return self.int4_bytes + self.other * 4
        return (self.quantisable + self.other) * (2 if base == "bf16" else 4)


def weight_split(config: Any, trust: bool = False) -> WeightSplit:
    """The WeightSplit of a decoder config (built on the meta device: no weights)."""
    from engine.models.quant_loading import empty_model
    from engine.models.quantized import int4_group, quantizable_names

    model = empty_model(config, "fp32", None, trust)
    names = set(quantizable_names(model))
    quant = int8 = int4 = 0
    for name, module in model.named_modules():
        if name in names:
            out, width = module.out_features, module.in_features
            quant += out * width
            int8 += out * width + 4 * out
            int4 += out * width // 2 + 4 * out * (width // int4_group(width))
    total = sum(p.numel() for p in model.parameters())
    return WeightSplit(quant, int8, int4, total - quant)


def check_bf16_base(base: str) -> None:
    """A bf16 base on a CPU without native bf16 is refused (emulated bf16 is ~100x slower)."""
    from engine.core.hardware import resolve_precision

    resolve_precision("auto", base)


def choose_base_precision(
    setting: str,
    compute: str,
    step_bytes: Callable[[str], int],
    free_bytes: int | None = None,
) -> tuple[str, str]:
    """(base precision, why) for a setting: auto takes the compute precision's own weights when
    the step (`step_bytes(base)`, checkpointed) fits in half the free RAM, else int8, else int4
    (`why` is empty when auto keeps full precision)."""
    from engine.tasks.causal_lm.memory import FREE_SHARE

    check_bf16_base(setting)
    if setting != "auto":
        return setting, f"base weights in {setting} (as set)"
    if free_bytes is None:
        from engine.core.hardware import free_memory_bytes

        free_bytes = free_memory_bytes()
    bound = FREE_SHARE * free_bytes
    gb = 1024**3
    full = "bf16" if compute == "bf16" else "fp32"
    tried: list[str] = []
    for base in (full, *QUANTISED):
        need = step_bytes(base)
        if need <= bound:
            if base == full:  # as every run before base_precision: the log's run line says it
                return base, ""
            return base, (
                f"base weights in {base} (auto): a step with {' or '.join(tried)} weights may "
                f"need more than half the {free_bytes / gb:.1f} GB free; with {base} about "
                f"{need / gb:.1f} GB"
            )
        tried.append(base)
    return "int4", (
        f"base weights in int4 (auto): even so a step may need {need / gb:.1f} GB, more than "
        f"half the {free_bytes / gb:.1f} GB free"
    )


def resolve_base(cfg: Any, config: Any, precision: str, length: int) -> tuple[str, str]:
    """(base precision, the log's words for it): the setting, or auto's choice by the estimate."""
    from engine.tasks.causal_lm.memory import count_parameters, estimate, uses_lean_paths

    setting = cfg.model.base_precision
    if setting != "auto":
        return choose_base_precision(setting, precision, lambda base: 0)
    trust = cfg.model.trust_remote_code
    n_params, lora = count_parameters(config, cfg.lora.target_modules, cfg.lora.lora_r, trust)
    split = weight_split(config, trust)
    batch = cfg.batch_size_for(max_length=length)
    lean = uses_lean_paths(config, precision, cfg.model.attention, length)

    def step_bytes(base: str) -> int:
        weights = split.bytes_for(base)
        return estimate(config, n_params, lora, batch, length, precision, True, lean, weights).total

    return choose_base_precision(setting, precision, step_bytes)


def base_weight_bytes(cfg: Any, config: Any, base: str) -> int | None:
    """The base's bytes for a quantised base (None: stored at the compute precision)."""
    if base not in QUANTISED:
        return None
    return weight_split(config, cfg.model.trust_remote_code).bytes_for(base)


def base_weights_for(cfg: Any, precision: str) -> tuple[int | None, str]:
    """(a quantised base's bytes or None, the words for the choice) of a configured model at
    max_length (or 512), as training will choose it."""
    from engine.models.loading import load_model_config, resolve_model_name

    name = resolve_model_name(cfg.model.model_name)
    config = load_model_config(name, cfg.model.trust_remote_code)
    base, why = resolve_base(cfg, config, precision, cfg.model.max_length or 512)
    return base_weight_bytes(cfg, config, base), why


def largest_models(free_bytes: int, compute: str = "fp32") -> dict[str, float]:
    """Parameters (in billions) of the largest decoder whose step fits in half the free RAM, per
    base precision (a typical decoder's split, a 2 x 512 step with checkpointing)."""
    from engine.tasks.causal_lm.memory import FREE_SHARE

    room = max(0.0, FREE_SHARE * free_bytes - STEP_ALLOWANCE)
    full = 2.0 if compute == "bf16" else 4.0
    share = TYPICAL_QUANTISED_SHARE
    per_param = {
        "bf16" if compute == "bf16" else "fp32": full,
        "int8": share * 1.0 + (1 - share) * full,
        "int4": share * INT4_BYTES + (1 - share) * full,
    }
    return {base: room / b / 1e9 for base, b in per_param.items()}


def fits_line(free_bytes: int, compute: str = "fp32") -> str:
    """'fits here: fp32 up to ~3B, int8 up to ~8B, int4 up to ~13B parameters'."""
    found = largest_models(free_bytes, compute)
    parts = [f"{base} up to ~{_billions(n)}" for base, n in found.items()]
    return (
        f"fits here ({free_bytes / 1024**3:.0f} GB free; a 2 x 512 step in half of it): "
        + ", ".join(parts)
        + " parameters"
    )


def _billions(n: float) -> str:
    return f"{n:.1f}B" if n < 2 else f"{n:.0f}B"
