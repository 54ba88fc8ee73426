"""Which linears of a decoder get LoRA: every attention and MLP projection inside the blocks."""

from __future__ import annotations

from typing import Any

from engine.core.errors import UserError

NEVER_TARGETS = ("lm_head", "embed_out", "output_layer", "score", "wte", "embed_tokens")


def block_linear_names(model: Any) -> list[str]:
    """Leaf names of the linear layers inside the numbered transformer blocks (attention and MLP
    projections); lm_head, embeddings and anything outside the blocks are never included."""
    from engine.models.lora import linear_kinds

    kinds = linear_kinds()
    names: dict[str, None] = {}
    for full, module in model.named_modules():
        parts = full.split(".")
        if (
            isinstance(module, kinds)
            and any(p.isdigit() for p in parts)
            and parts[-1] not in NEVER_TARGETS
        ):
            names[parts[-1]] = None
    return list(names)


def choose_decoder_targets(model: Any, setting: str) -> list[str]:
    """'auto' / 'all-linear' = every attention and MLP projection present; else the named ones."""
    present = block_linear_names(model)
    wanted = [s.strip() for s in setting.split(",") if s.strip()]
    if wanted in (["auto"], ["all-linear"]):
        if not present:
            raise UserError(
                "found no linear layers inside this model's blocks for LoRA",
                where="lora.target_modules",
                hint="name the modules to adapt, comma-separated",
                field="lora.target_modules",
            )
        return present
    from engine.models.lora import require_present

    return require_present(wanted, present, "projections")
