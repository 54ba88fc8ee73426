"""Tokenize chats once per run (cached in the run directory as plain arrays, never pickles)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.core.words import plural
from engine.tasks.causal_lm.formats import Chat
from engine.tasks.causal_lm.template import encode_chat, end_of_turn_ids

CACHE_DIR = "tokenized"


class ChatDataset:
    """Token ids and labels stored flat with offsets; items are {input_ids, labels} lists."""

    def __init__(self, ids: np.ndarray, labels: np.ndarray, offsets: np.ndarray) -> None:
        self.ids, self.labels, self.offsets = ids, labels, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> dict[str, Any]:
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        return {
            "input_ids": self.ids[start:end].tolist(),
            "labels": self.labels[start:end].tolist(),
        }

    def lengths(self) -> np.ndarray:
        """Token count of every example."""
        return np.diff(self.offsets)

    @property
    def tokens(self) -> int:
        """Total real (non-pad) tokens."""
        return int(self.offsets[-1])

    @property
    def trained_tokens(self) -> int:
        """Tokens the loss is computed on."""
        return int((self.labels != -100).sum())


@dataclass
class EncodeReport:
    """What tokenization did to the rows: kept, truncated, dropped (prompt alone too long)."""

    kept: int = 0
    truncated: int = 0
    dropped: list[int] = field(default_factory=list)  # indices of dropped rows
    unstable: int = 0  # chats whose template rewrites earlier turns (last answer trained only)

    def notes(self, split: str, max_length: int) -> list[str]:
        """Log lines for the run (empty when nothing happened worth saying)."""
        out = []
        if self.truncated:
            out.append(
                f"{split}: {self.truncated} of {plural(self.kept, 'example')} "
                f"{'was' if self.truncated == 1 else 'were'} cut to max_length="
                f"{max_length} tokens (the end of their answers is not trained)"
            )
        if self.dropped:
            first = ", ".join(str(i + 1) for i in self.dropped[:5])
            more = "..." if len(self.dropped) > 5 else ""
            out.append(
                f"{split}: dropped {plural(len(self.dropped), 'example')} whose prompt alone "
                f"fills max_length={max_length} ({split} "
                f"{'example' if len(self.dropped) == 1 else 'examples'} {first}{more}); "
                "raise max_length to train on them"
            )
        if self.unstable:
            out.append(
                f"{split}: the chat template rewrites earlier turns in {self.unstable} multi-turn "
                "chats; only their last answer is trained"
            )
        return out


def encode_chats(
    tokenizer: Any, chats: list[Chat], max_length: int, train_on_prompt: bool = False
) -> tuple[ChatDataset, EncodeReport]:
    """Tokenize every chat with its loss mask."""
    stops = end_of_turn_ids(tokenizer)
    ids: list[int] = []
    labels: list[int] = []
    offsets = [0]
    report = EncodeReport()
    for i, chat in enumerate(chats):
        enc = encode_chat(tokenizer, chat, max_length, train_on_prompt, stops)
        if enc is None:
            report.dropped.append(i)
            continue
        ids += enc.input_ids
        labels += enc.labels
        offsets.append(len(ids))
        report.kept += 1
        report.truncated += enc.truncated
        report.unstable += not enc.prefix_stable
    data = ChatDataset(
        np.asarray(ids, dtype=np.int32),
        np.asarray(labels, dtype=np.int32),
        np.asarray(offsets, dtype=np.int64),
    )
    return data, report


def cache_key(
    tokenizer: Any, model: str, chats: list[Chat], max_length: int, on_prompt: bool
) -> str:
    """A hash of everything the tokens depend on."""
    h = hashlib.sha256()
    meta = [model, len(tokenizer), tokenizer.chat_template or "", max_length, on_prompt, "v1"]
    h.update(json.dumps(meta).encode())
    for chat in chats:
        h.update(json.dumps([chat.raw, chat.turns], ensure_ascii=False).encode())
    return h.hexdigest()[:20]


def encode_cached(
    run_dir: Path | None,
    split: str,
    tokenizer: Any,
    model: str,
    chats: list[Chat],
    max_length: int,
    on_prompt: bool,
) -> tuple[ChatDataset, EncodeReport, bool]:
    """encode_chats, reused from the run directory when nothing changed; (data, report, hit)."""
    if run_dir is None:
        return (*encode_chats(tokenizer, chats, max_length, on_prompt), False)
    folder = Path(run_dir) / CACHE_DIR
    path = (
        folder / f"causal-{split}-{cache_key(tokenizer, model, chats, max_length, on_prompt)}.npz"
    )
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            data = ChatDataset(z["ids"], z["labels"], z["offsets"])
            report = EncodeReport(**json.loads(str(z["report"])))
        return data, report, True
    data, report = encode_chats(tokenizer, chats, max_length, on_prompt)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        ids=data.ids,
        labels=data.labels,
        offsets=data.offsets,
        report=np.asarray(json.dumps(report.__dict__)),
    )
    tmp.replace(path)
    return data, report, False
