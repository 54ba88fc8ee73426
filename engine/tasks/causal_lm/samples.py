"""Sample generations from held-out prompts at each evaluation, as `sample` events."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from engine.rundir.events import EventWriter, Sample
from engine.tasks.causal_lm.formats import Chat
from engine.tasks.causal_lm.generation import Sampling, generate


def shown_prompt(chat: Chat) -> str:
    """The part of a prompt a person reads: the last user message (or the raw text)."""
    if chat.raw:
        return chat.text
    users = [t["content"] for t in chat.prompt_turns() if t["role"] == "user"]
    return users[-1] if users else ""


class SamplesCallback(TrainerCallback):
    """Greedy answers to a few held-out prompts after every evaluation, beside the references."""

    def __init__(
        self, writer: EventWriter, chats: list[Chat], tokenizer: Any, max_new_tokens: int = 64
    ) -> None:
        self.writer = writer
        self.chats = chats
        self.tokenizer = tokenizer
        self.sampling = Sampling(max_new_tokens=max_new_tokens)
        self.training_done = False

    def on_train_end(self, args, state, control, **kwargs):  # noqa: D102
        self.training_done = True

    def on_evaluate(self, args, state, control, model=None, **kwargs):  # noqa: D102
        if model is None or not self.chats or self.training_done:
            return
        was_training = model.training
        model.eval()
        try:
            answers = generate(model, self.tokenizer, self.chats, self.sampling)
        finally:
            model.train(was_training)
        for i, (chat, answer) in enumerate(zip(self.chats, answers, strict=True)):
            self.writer.emit(
                Sample(
                    step=state.global_step,
                    index=i,
                    prompt=shown_prompt(chat),
                    reference=chat.reference(),
                    generated=answer,
                )
            )
