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


def char_limit(max_length: int) -> int:
    """Characters kept before tokenizing: far more than max_length tokens ever need.

    One huge field (a 50 MB text) would otherwise be tokenized whole, for gigabytes of memory
    and minutes, only to be truncated to max_length tokens.
    """
    return max_length * 32


def encode(tokenizer: Any, texts: Any, labels: list[int], max_length: int) -> EncodedDataset:
    """Tokenize texts (cut by characters, truncated to max_length, no padding)."""
    ids_list: list[list[int]] = []
    limit = char_limit(max_length)
    for start in range(0, len(texts), 2048):
        chunk = [texts[i][:limit] for i in range(start, min(start + 2048, len(texts)))]
        ids_list += tokenizer(chunk, truncation=True, max_length=max_length)["input_ids"]
    lengths = np.fromiter((len(x) for x in ids_list), dtype=np.int64, count=len(ids_list))
    offsets = np.zeros(len(ids_list) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter((t for x in ids_list for t in x), dtype=np.int32, count=int(offsets[-1]))
    return EncodedDataset(flat, offsets, np.asarray(labels, dtype=np.int64))


class LazyEncoded:
    """Big data: texts stay in the memory-mapped Arrow file and are tokenized when asked for.

    Training starts at once instead of after tokenizing millions of rows; length grouping uses
    character lengths, which order texts nearly as token counts do.
    """

    def __init__(self, texts: Any, labels: Any, tokenizer: Any, max_length: int) -> None:
        import numpy as np

        self.texts = texts
        self.labels = np.asarray(labels, dtype=np.int64)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.limit = char_limit(max_length)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        text = self.texts[i][: self.limit]
        ids = self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"]
        return {"input_ids": ids, "labels": int(self.labels[i])}

    def lengths(self) -> Any:
        """Approximate lengths (characters) for length grouping."""
        return self.texts.char_lengths()


def cache_key(tokenizer_name: str, max_length: int, texts: list[str], labels: list[int]) -> str:
    """A digest of everything that determines the token ids."""
    h = hashlib.sha256()
    # The version and the character cut are part of the key: a cache made by older code (or
    # with another cut) is never reused for this one.
    h.update(
        json.dumps(["v2", tokenizer_name, max_length, char_limit(max_length), len(texts)]).encode()
    )
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
    """Encode a split, reusing `run_dir/tokenized/<split>-<key>.npz` when present. Returns (data, hit).

    Big Arrow-backed data is not tokenized ahead: it is encoded lazily, batch by batch.
    """
    if not isinstance(texts, list):
        return LazyEncoded(texts, labels, tokenizer, max_length), False
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
