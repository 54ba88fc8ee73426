"""What the GGUF tests share: whether the extras are here, and llama.cpp's greedy tokens and logits."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

HAVE_GGUF = importlib.util.find_spec("gguf") is not None
HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None
needs_extra = pytest.mark.skipif(
    not (HAVE_GGUF and HAVE_LLAMA),
    reason='needs llama-cpp-python (compiles llama.cpp, ~20 min): pip install -e ".[llama-cpp]"',
)
NEW = 8  # tokens generated per prompt
PROMPTS = [
    "Is this review positive or negative? a great film",
    "Is this review positive or negative? awful plot",
    "Is this review positive or negative? nice story",
]


def review_chats() -> list[dict]:
    """32 one-turn review chats answered positive or negative."""
    rows = []
    for i, review in enumerate(["a great film", "awful plot", "nice story", "dull and slow"] * 8):
        answer = "positive" if i % 4 in (0, 2) else "negative"
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"Is this review positive or negative? {review}"},
                    {"role": "assistant", "content": answer},
                ]
            }
        )
    return rows


def pretrain(folder: Path, rows: list[dict], steps: int = 60) -> None:
    """Teach the random tiny decoder the chats outright (full weights), so its greedy choices
    are clear (logit gaps of several units) and it ends answers with <|im_end|>."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.tasks.causal_lm.template import ensure_chat_template

    tok = AutoTokenizer.from_pretrained(folder)
    ensure_chat_template(tok)
    tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(folder)
    texts = [tok.apply_chat_template(r["messages"], tokenize=False) for r in rows]
    batch = tok(texts, padding=True, return_tensors="pt")
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-2)
    for _ in range(steps):
        model(**batch, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(folder, safe_serialization=True)


def greedy(llm, ids: list[int], stops: list[int]) -> list[int]:
    """llama.cpp's greedy tokens after `ids`, ending with the first end-of-generation token."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    out: list[int] = []
    for token in llm.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
        out.append(int(token))
        if llama_cpp.llama_vocab_is_eog(vocab, token) or len(out) == NEW:
            break
    return out


def last_logits(llm, ids: list[int]):
    """llama.cpp's logits for the token after `ids`."""
    import llama_cpp

    llm.reset()
    llm.eval(ids)
    row = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(row, shape=(llm.n_vocab(),)).astype(np.float64)


def llama(path: Path, lora: Path | None = None):
    """A llama.cpp model (and LoRA) on 2 threads, quiet."""
    from llama_cpp import Llama

    kwargs = {"lora_path": str(lora)} if lora else {}
    return Llama(model_path=str(path), n_ctx=256, n_threads=2, verbose=False, seed=0, **kwargs)
