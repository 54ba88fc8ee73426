"""Chat templates and the loss mask: chats -> input_ids + labels (-100 on untrained tokens)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.tasks.causal_lm.formats import Chat

IGNORE = -100
IM_START, IM_END = "<|im_start|>", "<|im_end|>"


def chatml_template(end: str = IM_END) -> str:
    """The ChatML fallback template; `end` closes each turn (the model's EOS when it lacks
    `<|im_end|>`, so no new token, and no embedding row LoRA could not train, is needed)."""
    return (
        "{%- for message in messages -%}"
        "{{ '"
        + IM_START
        + "' + message['role'] + '\\n' + message['content'] + '"
        + end
        + "' + '\\n' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '" + IM_START + "assistant\\n' }}{%- endif -%}"
    )


def _is_single_token(tokenizer: Any, text: str) -> bool:
    ids = tokenizer.convert_tokens_to_ids(text)
    return isinstance(ids, int) and ids != tokenizer.unk_token_id and ids is not None


def ensure_chat_template(tokenizer: Any) -> str:
    """Give a tokenizer without a chat template the ChatML fallback; returns 'model' or 'chatml'."""
    if getattr(tokenizer, "chat_template", None):
        return getattr(tokenizer, "template_source", "model")
    end = IM_END if _is_single_token(tokenizer, IM_END) else (tokenizer.eos_token or IM_END)
    tokenizer.chat_template = chatml_template(end)
    tokenizer.template_source = "chatml"
    return "chatml"


def render(tokenizer: Any, turns: list[dict[str, str]], generation_prompt: bool = False) -> str:
    """The chat as template text."""
    return tokenizer.apply_chat_template(
        turns, tokenize=False, add_generation_prompt=generation_prompt
    )


def prompt_text(tokenizer: Any, chat: Chat) -> str:
    """What the model sees before it answers: the prompt turns plus the assistant header."""
    if chat.raw:
        return chat.text
    return render(tokenizer, chat.prompt_turns(), generation_prompt=True)


SAMPLE_TURNS = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]


def sample_render(tokenizer: Any) -> str:
    """SAMPLE_TURNS as the template writes them ('' without a template, or for a template that
    needs other roles)."""
    if not getattr(tokenizer, "chat_template", None):
        return ""
    try:
        return render(tokenizer, SAMPLE_TURNS)
    except Exception:
        return ""


def special_token_ids(tokenizer: Any) -> set[int]:
    """Ids of the tokenizer's special and added tokens."""
    added = getattr(tokenizer, "added_tokens_decoder", {})
    return {int(i) for i in tokenizer.all_special_ids} | {int(i) for i in added}


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """Token ids that end an assistant answer: the template's end-of-turn token and EOS."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    after = sample_render(tokenizer).split("y")[-1]
    special = special_token_ids(tokenizer)
    for tid in tokenizer(after, add_special_tokens=False)["input_ids"]:
        if tid in special and tid not in ids:
            ids.append(int(tid))
            break
    return ids


def common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix of two strings."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def segments(tokenizer: Any, chat: Chat) -> tuple[list[tuple[str, bool]], bool]:
    """The chat as (text, trained) pieces in order; the flag is False when the template rewrites
    earlier turns, in which case only the last answer is trained (as TRL's prompt-completion)."""
    if chat.raw:
        return [(chat.text, True)], True
    answers = [i for i, t in enumerate(chat.turns) if t["role"] == "assistant"]
    pieces: list[tuple[str, bool]] = []
    done = ""
    for k in answers:
        prompt = render(tokenizer, chat.turns[:k], generation_prompt=True)
        full = render(tokenizer, chat.turns[: k + 1])
        if not prompt.startswith(done) or not full.startswith(prompt):
            break
        pieces += [(prompt[len(done) :], False), (full[len(prompt) :], True)]
        done = full
    else:
        return [p for p in pieces if p[0]], True
    # Prefix-unstable template: the last answer after the prompt as inference renders it.
    k = answers[-1]
    prompt = render(tokenizer, chat.turns[:k], generation_prompt=True)
    full = render(tokenizer, chat.turns[: k + 1])
    cut = common_prefix(prompt, full)
    return [p for p in [(prompt[:cut], False), (full[cut:], True)] if p[0]], False


@dataclass
class Encoded:
    """One tokenized example and what happened to it."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False
    prefix_stable: bool = True


def encode_chat(
    tokenizer: Any,
    chat: Chat,
    max_length: int,
    train_on_prompt: bool = False,
    stop_ids: list[int] | None = None,
) -> Encoded | None:
    """Token ids and labels (-100 on prompt tokens unless `train_on_prompt`); an EOS closes every
    answer whose template does not end it already. None when truncation leaves nothing trained."""
    stops = set(stop_ids if stop_ids is not None else end_of_turn_ids(tokenizer))
    eos = tokenizer.eos_token_id
    parts, stable = segments(tokenizer, chat)
    ids: list[int] = []
    labels: list[int] = []
    for n, (text, trained) in enumerate(parts):
        # Raw text gets the tokenizer's BOS; a chat template writes its own.
        special = chat.raw and n == 0
        piece = tokenizer(text, add_special_tokens=special)["input_ids"]
        if trained and eos is not None and not stops.intersection(piece):
            piece = piece + [eos]
        ids += piece
        labels += piece if (trained or train_on_prompt) else [IGNORE] * len(piece)
    truncated = len(ids) > max_length
    ids, labels = ids[:max_length], labels[:max_length]
    if all(label == IGNORE for label in labels):
        return None
    return Encoded(ids, labels, truncated, stable)
