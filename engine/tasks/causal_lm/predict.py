"""Headless generation: `predict RUN "prompt"` streams the answer; `--file` answers a batch."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from engine.core.errors import UserError
from engine.tasks.causal_lm.formats import Chat, normalise_all
from engine.tasks.causal_lm.generation import Sampling, generate, stream


def sampling_from(args: Any) -> Sampling:
    """Sampling settings from CLI arguments (greedy unless a temperature is given)."""
    s = Sampling(
        max_new_tokens=int(getattr(args, "max_new_tokens", None) or 128),
        temperature=float(getattr(args, "temperature", None) or 0.0),
        top_p=float(getattr(args, "top_p", None) or 1.0),
    )
    if s.max_new_tokens < 1 or s.temperature < 0 or not 0 < s.top_p <= 1:
        raise UserError(
            "bad sampling settings",
            where="predict",
            hint="max_new_tokens >= 1, temperature >= 0 (0 = greedy), 0 < top_p <= 1",
        )
    return s


def user_chat(text: str, system: str = "") -> Chat:
    """A one-message chat (with an optional system prompt)."""
    turns = [{"role": "system", "content": system}] if system else []
    return Chat(turns + [{"role": "user", "content": text}])


def read_prompts(path: str, column_map: str = "") -> tuple[list[dict[str, Any]], list[Chat]]:
    """Records of a file in any training format, and their prompt parts as chats."""
    from engine.data.sources import open_source
    from engine.tasks.causal_lm.data import records

    source = open_source(path, field_name="--file")
    split = source.train_split
    rows = records(source, split)
    chats, _ = normalise_all(
        rows,
        source.columns,
        column_map,
        source=str(source.path or source.name),
        locate=lambda i: source.locate(split, i),
        need_answer=False,
    )
    prompts = [c if c.raw else Chat(c.prompt_turns()) for c in chats]
    return rows, prompts


def _with_system(chat: Chat, system: str) -> Chat:
    """The chat with a system prompt first, unless it is raw text or has one already."""
    if chat.raw or (chat.turns and chat.turns[0]["role"] == "system"):
        return chat
    return Chat([{"role": "system", "content": system}, *chat.turns])


def quiet_deprecations() -> None:
    """No transformers FutureWarning on every predict (peft asks a deprecated property)."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")


def predict_cli(args: Any, weights: Path) -> int:
    """Print completions for prompts, or answer every record of a file into JSONL."""
    from engine.tasks.causal_lm.modeling import load_generator

    sampling = sampling_from(args)
    texts = list(getattr(args, "texts", []) or [])
    if not texts and not getattr(args, "file", None):
        raise UserError(
            "nothing to generate from",
            hint='give a prompt, e.g. predict RUN "Name three colours", or --file prompts.jsonl',
        )
    quiet_deprecations()
    model, tokenizer = load_generator(weights, getattr(args, "threads", 0) or 0)
    system = getattr(args, "system", "") or ""
    for text in texts:
        if len(texts) > 1:
            print(f"> {text}")
        for piece in stream(model, tokenizer, user_chat(text, system), sampling):
            print(piece, end="", flush=True)
        print()
    if getattr(args, "file", None):
        rows, prompts = read_prompts(args.file, getattr(args, "column_map", "") or "")
        if system:
            prompts = [_with_system(p, system) for p in prompts]
        out_path = getattr(args, "out", None)
        sink = open(out_path, "w", encoding="utf-8") if out_path else nullcontext(sys.stdout)  # noqa: SIM115
        with sink as fh:
            for start in range(0, len(prompts), 8):
                chunk = prompts[start : start + 8]
                answers = generate(model, tokenizer, chunk, sampling)
                for row, answer in zip(rows[start : start + 8], answers, strict=True):
                    if "completion" in row and row["completion"] not in (None, ""):
                        row["reference"] = row["completion"]
                    row["completion"] = answer
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                fh.flush()
        if out_path:
            print(f"wrote {len(rows)} completions to {out_path}", file=sys.stderr)
    return 0
