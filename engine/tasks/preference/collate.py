"""Pad preference batches: the chosen rows, then the rejected rows, in one padded batch."""

from __future__ import annotations

from typing import Any

from engine.tasks.causal_lm.collate import CausalCollator

ROW_KEYS = ("input_ids", "attention_mask", "labels")
# A part of a preference step holds about this many bytes in its widest activation (tokens x the
# MLP width). Measured at the SmolLM2-135M shape (fp32, 1 thread, AMD EPYC, DPO, batch 8 of
# ~60-token pairs): parts of 2048 tokens 110 s / 1.80 GB, 512: 110 s / 1.84 GB, 256:
# 94 s / 1.65 GB, 128 (a pair a part): 101 s / 1.53 GB. Small parts keep the heap's blocks small
# and let auto checkpointing keep more layers; a tiny model, whose step is mostly per-call
# overhead, keeps its parts large.
PART_BLOCK_BYTES = 1024**2
PART_TOKENS_RANGE = (128, 2048)


class PairCollator:
    """A batch of n pairs as 2n right-padded rows: row i is pair i's chosen, row n + i its rejected."""

    def __init__(self, pad_id: int, multiple: int = 1) -> None:
        self.rows = CausalCollator(pad_id, multiple)
        self.multiple = multiple

    def __call__(self, pairs: list[dict[str, Any]]) -> dict[str, Any]:
        """input_ids, attention_mask, labels of [2n, width] (one forward for both answers)."""
        chosen = [{"input_ids": p["input_ids"], "labels": p["labels"]} for p in pairs]
        rejected = [
            {"input_ids": p["rejected_input_ids"], "labels": p["rejected_labels"]} for p in pairs
        ]
        return self.rows(chosen + rejected)


def pair_part_tokens(config: Any, precision: str) -> int:
    """Padded tokens a part of a preference step may hold, for a decoder config: its widest
    activation (MLP width x tokens) near PART_BLOCK_BYTES, within PART_TOKENS_RANGE."""
    from engine.tasks.causal_lm.memory import decoder_widths

    inter = decoder_widths(config)[3]
    width = 2 if precision == "bf16" else 4
    low, high = PART_TOKENS_RANGE
    return max(low, min(high, PART_BLOCK_BYTES // max(1, inter * width)))


def split_pairs(
    inputs: dict[str, Any], part_tokens: int, multiple: int = 1
) -> list[dict[str, Any]]:
    """The batch as parts of pairs of similar length, each trimmed to its longest row.

    Each part keeps its pairs' chosen and rejected rows together (chosen first) and carries the
    whole batch's pair and chosen-token counts, so the parts' losses add up to the batch's.
    """
    import torch

    from engine.tasks.causal_lm.step_parts import part_count

    ids, mask, labels = (inputs[k] for k in ROW_KEYS)
    n = ids.shape[0] // 2
    totals = {
        "pair_total": n,
        "chosen_tokens": int((labels[:n, 1:] != -100).sum()),
    }
    parts = part_count(n, 2 * ids.shape[1], part_tokens)
    if parts <= 1:
        return [{**inputs, **totals}]
    lengths = mask.sum(1)
    longest = torch.maximum(lengths[:n], lengths[n:])
    out = []
    for index in longest.argsort(stable=True).tensor_split(parts):
        rows = torch.cat((index, index + n))
        keep = min(ids.shape[1], -(-int(longest[index].max()) // multiple) * multiple)
        out.append({**{k: inputs[k][rows, :keep] for k in ROW_KEYS}, **totals})
    return out
