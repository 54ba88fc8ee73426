"""Build tiny models from a config (no download) for fast tests."""

from __future__ import annotations

import json
import re
from pathlib import Path

from engine.data.readers import EXAMPLE_DATA

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _vocab() -> list[str]:
    words: dict[str, None] = {}
    for line in EXAMPLE_DATA.read_text().splitlines():
        for w in re.findall(r"[a-z]+|[^\sa-z]", json.loads(line)["text"].lower()):
            words[w] = None
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces = ["##" + c for c in letters]
    return SPECIALS + sorted(set(letters) | set(words)) + pieces + list("0123456789.,!?'\"-")


def make_tiny_bert(folder: Path, hidden: int = 32, layers: int = 2) -> Path:
    """A randomly initialised 2-layer BERT with a WordPiece tokenizer, saved as safetensors."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = list(dict.fromkeys(_vocab()))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=128,
    )
    BertForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)
    return folder
