"""Tokenize once per run and cache the token ids (as plain arrays, never pickles)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

CACHE_DIR = "tokenized"


class EncodedDataset:
    """Token ids stored flat with offsets; items are dicts the Trainer's collator pads."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, labels: np.ndarray) -> None:
        self.ids = ids
        self.offsets = offsets
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        return {"input_ids": self.ids[start:end].tolist(), "labels": int(self.labels[i])}

    def lengths(self) -> np.ndarray:
        """Token count of every example."""
        return np.diff(self.offsets)

    @property
    def tokens(self) -> int:
        """Total real (non-pad) tokens."""
        return int(self.offsets[-1])


def encode(tokenizer: Any, texts: list[str], labels: list[int], max_length: int) -> EncodedDataset:
    """Tokenize texts (truncated to max_length, no padding)."""
    ids_list: list[list[int]] = []
    for start in range(0, len(texts), 2048):
        chunk = texts[start : start + 2048]
        ids_list += tokenizer(chunk, truncation=True, max_length=max_length)["input_ids"]
    lengths = np.fromiter((len(x) for x in ids_list), dtype=np.int64, count=len(ids_list))
    offsets = np.zeros(len(ids_list) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter((t for x in ids_list for t in x), dtype=np.int32, count=int(offsets[-1]))
    return EncodedDataset(flat, offsets, np.asarray(labels, dtype=np.int64))


def cache_key(tokenizer_name: str, max_length: int, texts: list[str], labels: list[int]) -> str:
    """A digest of everything that determines the token ids."""
    h = hashlib.sha256()
    h.update(json.dumps([tokenizer_name, max_length, len(texts)]).encode())
    for t in texts:
        h.update(t.encode("utf-8", "replace"))
        h.update(b"\0")
    h.update(np.asarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def encode_cached(
    run_dir: Path,
    split: str,
    tokenizer: Any,
    tokenizer_name: str,
    texts: list[str],
    labels: list[int],
    max_length: int,
) -> tuple[EncodedDataset, bool]:
    """Encode a split, reusing `run_dir/tokenized/<split>-<key>.npz` when present. Returns (data, hit)."""
    key = cache_key(tokenizer_name, max_length, texts, labels)
    folder = run_dir / CACHE_DIR
    path = folder / f"{split}-{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return EncodedDataset(z["ids"], z["offsets"], z["labels"]), True
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)
    data = encode(tokenizer, texts, labels, max_length)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{split}-{key}.tmp.npz"
    np.savez(tmp, ids=data.ids, offsets=data.offsets, labels=data.labels)
    tmp.replace(path)
    return data, False
