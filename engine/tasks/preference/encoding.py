"""Tokenize preference pairs once per run: chosen and rejected rows that share the prompt tokens.

Each row is the prompt as the chat template renders it before an answer (the generation prompt)
followed by the completion; labels are -100 on the prompt, so log-probs are summed over the
completion tokens only (as causal-lm trains on answers only). An EOS closes a completion whose
template does not end it. Rows longer than max_length lose the end of their completion; a pair
whose prompt alone fills max_length is dropped (and counted).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from engine.tasks.causal_lm.encoding import CACHE_DIR, ChatDataset, EncodeReport
from engine.tasks.causal_lm.template import IGNORE, common_prefix, end_of_turn_ids, render
from engine.tasks.preference.pairs import Pair


class PairDataset:
    """Chosen and rejected rows side by side; items hold both ({input_ids, labels, rejected_*})."""

    def __init__(self, chosen: ChatDataset, rejected: ChatDataset) -> None:
        self.chosen, self.rejected = chosen, rejected

    def __len__(self) -> int:
        return len(self.chosen)

    def __getitem__(self, i: int) -> dict[str, Any]:
        c, r = self.chosen[i], self.rejected[i]
        return {
            "input_ids": c["input_ids"],
            "labels": c["labels"],
            "rejected_input_ids": r["input_ids"],
            "rejected_labels": r["labels"],
        }

    def lengths(self) -> np.ndarray:
        """The longer row of every pair (what the pair pads a batch to)."""
        return np.maximum(self.chosen.lengths(), self.rejected.lengths())

    @property
    def tokens(self) -> int:
        """Real tokens of both rows."""
        return self.chosen.tokens + self.rejected.tokens


def completion_text(tokenizer: Any, prompt: list[dict[str, str]], answer: list[dict[str, str]]):
    """(prompt text, completion text) as the template writes the chat."""
    head = render(tokenizer, prompt, generation_prompt=True)
    full = render(tokenizer, prompt + answer)
    if full.startswith(head):
        return head, full[len(head) :]
    cut = common_prefix(head, full)  # a template that rewrites the prompt once answered
    return full[:cut], full[cut:]


def encode_row(
    tokenizer: Any, pair: Pair, answer: list[dict[str, str]], max_length: int, stops: set[int]
) -> tuple[list[int], list[int], bool] | None:
    """(ids, labels, truncated) of prompt + one answer; None when the prompt fills max_length."""
    head, tail = completion_text(tokenizer, pair.prompt, answer)
    prompt_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(tail, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    if eos is not None and not stops.intersection(answer_ids):
        answer_ids = answer_ids + [eos]
    if len(prompt_ids) >= max_length:
        return None
    ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([IGNORE] * len(prompt_ids) + answer_ids)[:max_length]
    return ids, labels, len(prompt_ids) + len(answer_ids) > max_length


def encode_pairs(
    tokenizer: Any, pairs: list[Pair], max_length: int
) -> tuple[PairDataset, EncodeReport]:
    """Tokenize every pair (chosen and rejected rows)."""
    stops = set(end_of_turn_ids(tokenizer))
    sides: dict[str, tuple[list[int], list[int], list[int]]] = {
        "chosen": ([], [], [0]),
        "rejected": ([], [], [0]),
    }
    report = EncodeReport()
    for i, pair in enumerate(pairs):
        chosen = encode_row(tokenizer, pair, pair.chosen, max_length, stops)
        rejected = encode_row(tokenizer, pair, pair.rejected, max_length, stops)
        if chosen is None or rejected is None:
            report.dropped.append(i)
            continue
        for side, (ids, labels, cut) in (("chosen", chosen), ("rejected", rejected)):
            all_ids, all_labels, offsets = sides[side]
            all_ids += ids
            all_labels += labels
            offsets.append(len(all_ids))
            report.truncated += cut
        report.kept += 1
    made = {
        side: ChatDataset(
            np.asarray(ids, dtype=np.int32),
            np.asarray(labels, dtype=np.int32),
            np.asarray(offsets, dtype=np.int64),
        )
        for side, (ids, labels, offsets) in sides.items()
    }
    return PairDataset(made["chosen"], made["rejected"]), report


def cache_key(tokenizer: Any, model: str, pairs: list[Pair], max_length: int) -> str:
    """A hash of everything the tokens depend on."""
    h = hashlib.sha256()
    meta = [model, len(tokenizer), tokenizer.chat_template or "", max_length, "pairs-v1"]
    h.update(json.dumps(meta).encode())
    for p in pairs:
        h.update(json.dumps([p.prompt, p.chosen, p.rejected], ensure_ascii=False).encode())
    return h.hexdigest()[:20]


def encode_cached(
    run_dir: Path | None, split: str, tokenizer: Any, model: str, pairs: list[Pair], max_length: int
) -> tuple[PairDataset, EncodeReport, bool]:
    """encode_pairs, reused from the run directory when nothing changed; (data, report, hit)."""
    if run_dir is None:
        return (*encode_pairs(tokenizer, pairs, max_length), False)
    folder = Path(run_dir) / CACHE_DIR
    path = folder / f"pairs-{split}-{cache_key(tokenizer, model, pairs, max_length)}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            data = PairDataset(
                ChatDataset(z["c_ids"], z["c_labels"], z["c_offsets"]),
                ChatDataset(z["r_ids"], z["r_labels"], z["r_offsets"]),
            )
            report = EncodeReport(**json.loads(str(z["report"])))
        return data, report, True
    data, report = encode_pairs(tokenizer, pairs, max_length)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    c, r = data.chosen, data.rejected
    np.savez(
        tmp,
        c_ids=c.ids,
        c_labels=c.labels,
        c_offsets=c.offsets,
        r_ids=r.ids,
        r_labels=r.labels,
        r_offsets=r.offsets,
        report=np.asarray(json.dumps(report.__dict__)),
    )
    tmp.replace(path)
    return data, report, False
