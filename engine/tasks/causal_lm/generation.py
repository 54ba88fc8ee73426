"""Generate answers: batches for predict and sample events, a token stream for the chat screen."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engine.tasks.causal_lm.formats import Chat
from engine.tasks.causal_lm.template import end_of_turn_ids, prompt_text


@dataclass
class Sampling:
    """How to pick tokens: greedy when temperature is 0."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0

    def kwargs(self, tokenizer: Any) -> dict[str, Any]:
        """Keyword arguments for model.generate."""
        out: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "eos_token_id": end_of_turn_ids(tokenizer),
            "pad_token_id": tokenizer.pad_token_id,
        }
        if self.temperature > 0:
            out.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        else:
            out.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return out


def _autocast(model: Any) -> Any:
    """bf16 autocast when the model holds bf16 weights (as during bf16 training), else nothing."""
    import contextlib

    import torch

    bf16 = any(p.dtype == torch.bfloat16 for p in model.parameters())
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def generate_ids(
    model: Any, tokenizer: Any, prompts: list[str], sampling: Sampling
) -> list[list[int]]:
    """New token ids per prompt (left-padded batch; the prompt is not repeated)."""
    import torch

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    stops = set(end_of_turn_ids(tokenizer))
    with torch.inference_mode(), _autocast(model):
        out = model.generate(**batch, **sampling.kwargs(tokenizer), use_cache=True)
    width = batch["input_ids"].shape[1]
    result = []
    for row in out[:, width:].tolist():
        cut = next((i for i, t in enumerate(row) if t in stops), len(row))
        result.append(row[:cut])
    return result


def generate(model: Any, tokenizer: Any, chats: list[Chat], sampling: Sampling) -> list[str]:
    """The answer to each chat's prompt part, as text."""
    prompts = [prompt_text(tokenizer, c) for c in chats]
    ids = generate_ids(model, tokenizer, prompts, sampling)
    return [tokenizer.decode(r, skip_special_tokens=True) for r in ids]


def stream(model: Any, tokenizer: Any, chat: Chat, sampling: Sampling) -> Iterator[str]:
    """Text pieces of one answer as they are generated (generation runs in its own thread)."""
    import threading

    import torch
    from transformers import TextIteratorStreamer

    batch = tokenizer(prompt_text(tokenizer, chat), return_tensors="pt", add_special_tokens=False)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    errors: list[BaseException] = []
    threads = torch.get_num_threads()  # the caller's cap (e.g. 1 beside a training run)

    def run() -> None:
        torch.set_num_threads(threads)
        try:
            with torch.inference_mode(), _autocast(model):
                model.generate(**batch, **sampling.kwargs(tokenizer), streamer=streamer)
        except BaseException as exc:  # surfaced to the reader below
            errors.append(exc)
            streamer.end()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    yield from streamer
    worker.join()
    if errors:
        raise errors[0]
