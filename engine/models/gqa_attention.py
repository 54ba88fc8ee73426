"""Eager attention for bf16 CPU training without repeat_kv copies or an fp32 softmax.

transformers' eager attention copies every key/value head once per query head it serves
(`repeat_kv`), upcasts the [batch, heads, length, length] scores to fp32 for the softmax, and
keeps both the fp32 and the bf16 probabilities for backward. Here the query heads of one
key/value head are one [group x length] block against it (no copies), and the softmax runs on
the bf16 scores (the CPU kernel accumulates in fp32 and rounds its output to bf16, the same
numbers eager gets after its cast), so backward keeps one bf16 copy of the probabilities.
Measured on the SmolLM2-135M shape (`bench/decoder_step.py`, bf16, checkpointing on): 1.03-1.10x
a step at ~250 tokens, 1.18x at 486, and a third of eager's attention memory.

It is registered with transformers under NAME for the training model only; transformers does not
write the attention implementation into saved configs, and adapters save no base config.
"""

from __future__ import annotations

from typing import Any

NAME = "finetune_tui_gqa"
# Model types whose eager attention is exactly repeat_kv + matmul + softmax + matmul (the mask
# carries causality, padding and any sliding window).
SUPPORTED = frozenset({"llama", "qwen2", "qwen3", "mistral"})


def gqa_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Any, None]:
    """Attention output [batch, length, heads, head_dim], as transformers' attention functions."""
    import torch

    b, h, n, d = query.shape
    kv_heads, m = key.shape[1], key.shape[2]
    group = h // kv_heads
    # Scaling the queries, not the scores: a [length x head_dim] multiply instead of
    # [length x length] forward and backward (and exact for the usual power-of-two scalings).
    q = (query * scaling).reshape(b, kv_heads, group * n, d)
    scores = torch.matmul(q, key.transpose(2, 3))
    if attention_mask is not None:
        scores.add_(_grouped_mask(attention_mask, group, m))
    probs = torch.softmax(scores, dim=-1)
    if dropout > 0.0:
        probs = torch.nn.functional.dropout(probs, p=dropout, training=module.training)
    out = torch.matmul(probs, value).view(b, h, n, d)
    return out.transpose(1, 2).contiguous(), None


_LAST_MASK: list[Any] = [None, 0, 0, None]  # (mask, group, keys, grouped): the latest batch's


def _grouped_mask(mask: Any, group: int, keys: int) -> Any:
    """A [b, 1, n, m] mask repeated for the `group` query heads of a block: [b, 1, group*n, m].

    Every layer of a forward gets the same mask object, so the repeat is made once per batch (the
    mask itself is held, so its memory cannot be reused by another); a plain, not broadcast-view,
    in-place add keeps autograd from copying the scores."""
    mask = mask[:, :, :, :keys] if mask.shape[-1] != keys else mask
    if group == 1:
        return mask
    held, held_group, held_keys, grouped = _LAST_MASK
    if held is not mask or held_group != group or held_keys != keys:
        b, _, n, m = mask.shape
        grouped = mask.expand(b, group, n, m).reshape(b, 1, group * n, m)
        _LAST_MASK[:] = [mask, group, keys, grouped]
    return grouped


def register() -> None:
    """Make NAME known to transformers' attention and mask registries (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(NAME, gqa_attention)
    AttentionMaskInterface.register(NAME, eager_mask)


def use_gqa_attention(model: Any) -> bool:
    """Switch a loaded bf16 decoder from eager to NAME; False (and eager kept) where it cannot."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) not in SUPPORTED:
        return False
    if getattr(config, "_attn_implementation", None) != "eager":
        return False
    register()
    try:
        model.set_attn_implementation(NAME)
    except (ValueError, AttributeError, KeyError):
        return False
    return model.config._attn_implementation == NAME
