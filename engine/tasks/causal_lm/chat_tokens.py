"""Chat-template tokens the model never learnt: found here, then trained as embedding rows.

A base model whose vocabulary holds `<|im_start|>` / `<|im_end|>` but that never saw them in
pretraining (our ChatML fallback; Qwen2 / Llama-3 base models have all-zero rows for theirs)
cannot learn to end an answer with LoRA alone: the end token's output row stays where it was,
its loss stays high (3.5 nats after 3 epochs in bench/sft_real.py) and takes the gradient from
the answer. peft's trainable tokens train just those rows (and the tied output rows with them).
"""

from __future__ import annotations

from typing import Any

from engine.tasks.causal_lm.template import end_of_turn_ids, sample_render, special_token_ids

# A row whose norm is below this share of the median row norm was never trained (zeros, or
# nearly: Qwen2 and Llama-3 base models ship their chat tokens this way).
UNTRAINED_NORM_SHARE = 1e-3


def template_special_ids(tokenizer: Any) -> list[int]:
    """Special tokens the chat template writes around a one-turn chat, and the answer's end."""
    special = special_token_ids(tokenizer)
    text = sample_render(tokenizer)
    ids = [int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"] if i in special]
    return list(dict.fromkeys(ids + end_of_turn_ids(tokenizer)))


def untrained_rows(model: Any, ids: list[int]) -> list[int]:
    """The ids whose input or output embedding row is (nearly) all zeros."""
    import torch

    out = []
    with torch.no_grad():
        embeddings = (model.get_input_embeddings(), model.get_output_embeddings())
        weights = [w for e in embeddings if (w := getattr(e, "weight", None)) is not None]
        unique = {id(w): w for w in weights}  # a tied head is the input's weight: look once
        for weight in unique.values():
            norms = weight.detach().float().norm(dim=1)
            floor = float(norms.median()) * UNTRAINED_NORM_SHARE
            out += [i for i in ids if i < norms.numel() and float(norms[i]) <= floor]
    return sorted(set(out))


def rows_to_train(model: Any, tokenizer: Any, template_source: str) -> list[int]:
    """Embedding rows to train: the ChatML fallback's own tokens, and any untrained template row."""
    ids = template_special_ids(tokenizer)
    common = {tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.pad_token_id}
    picked = set(untrained_rows(model, ids))
    if template_source == "chatml":  # the model never saw this format: its tokens are new to it
        picked |= {i for i in ids if i not in common}
    return sorted(picked)


def trainable_token_indices(model: Any, ids: list[int]) -> list[int] | dict[str, list[int]]:
    """peft's `trainable_token_indices`: a list when the output embedding is tied to the input
    (peft then trains both through one row), else the row ids for each of the two modules."""
    inp, outp = model.get_input_embeddings(), model.get_output_embeddings()
    if outp is None or getattr(outp, "weight", None) is inp.weight:
        return ids
    names = {id(m): n for n, m in model.named_modules()}
    return {names[id(inp)]: ids, names[id(outp)]: ids}


def describe_rows(tokenizer: Any, ids: list[int]) -> str:
    """'embedding rows of <|im_start|>, <|im_end|>' for the run log."""
    return "embedding rows of " + ", ".join(tokenizer.convert_ids_to_tokens(ids))
