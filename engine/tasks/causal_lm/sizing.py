"""max_length from the data (when the setting is 0 = auto) and the attention kernel for it."""

from __future__ import annotations

import math
import random
from typing import Any

AUTO_CAP = 2048  # auto never goes beyond this (memory and time grow with it)
AUTO_PERCENTILE = 99
SAMPLE_ROWS = 2000  # rows tokenized to measure (a sample of big data sets)
# bf16 eager attention against SDPA on the SmolLM2-135M shape (AVX512-BF16 EPYC, batch 12 x
# ~280 tokens): 27 s against 63 s a step, SDPA's CPU backward being the slow part. Beyond this
# length eager's [heads, length, length] scores grow too big: SDPA from there.
EAGER_UP_TO = 1024


def model_positions_of(config: Any) -> int | None:
    """The model's position limit, when its config says."""
    from engine.models.checks import model_positions

    return model_positions(config)


def auto_max_length(tokenizer: Any, chats: list[Any], positions: int | None, seed: int = 0) -> int:
    """The 99th percentile of the chats' tokenized lengths, rounded up to a multiple of 8,
    capped by the model's positions and AUTO_CAP."""
    from engine.tasks.causal_lm.template import encode_chat, end_of_turn_ids

    cap = min(positions or AUTO_CAP, AUTO_CAP)
    rows = list(chats)
    if len(rows) > SAMPLE_ROWS:
        rows = random.Random(seed).sample(rows, SAMPLE_ROWS)
    stops = end_of_turn_ids(tokenizer)
    lengths = []
    for chat in rows:
        enc = encode_chat(tokenizer, chat, cap, False, stops)
        lengths.append(len(enc.input_ids) if enc is not None else cap)
    if not lengths:
        return min(512, cap)
    lengths.sort()
    index = min(len(lengths) - 1, math.ceil(AUTO_PERCENTILE / 100 * len(lengths)) - 1)
    return max(16, min(cap, -(-lengths[index] // 8) * 8))


def resolve_max_length(
    cfg: Any, tokenizer: Any, config: Any, chats: list[Any] | None
) -> tuple[int, str]:
    """(max_length, log note): the setting, or for 0 (auto) a length chosen from `chats`."""
    if cfg.model.max_length:
        return cfg.model.max_length, ""
    positions = model_positions_of(config)
    length = auto_max_length(tokenizer, chats or [], positions, cfg.training.seed)
    sample = min(len(chats or []), SAMPLE_ROWS)
    limit = f"the model takes {positions}" if positions else "the model sets no limit"
    return length, (
        f"max_length auto: {length} tokens (the {AUTO_PERCENTILE}th percentile of {sample} "
        f"training chats; {limit}; auto stops at {AUTO_CAP})"
    )


def choose_causal_attention(setting: str, precision: str, length: int) -> str:
    """The attention kernel for instruction tuning: the setting, or eager / SDPA by measurement."""
    if setting != "auto":
        return setting
    return "eager" if precision == "bf16" and length <= EAGER_UP_TO else "sdpa"
