"""Preference data: rows of prompt / chosen / rejected (text or chat messages) as checked pairs.

Accepted shapes (TRL's and UltraFeedback's):
- `prompt`, `chosen`, `rejected` as plain text (the prompt becomes a user turn, the answers
  assistant turns, as causal-lm's prompt-completion);
- `prompt` as a list of messages, `chosen` / `rejected` as the assistant turn(s);
- no `prompt` (or the same one repeated): `chosen` / `rejected` as whole conversations that share
  the prompt turns; the shared leading turns are the prompt, the rest the completions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.core.errors import UserError
from engine.tasks.causal_lm.formats import Chat, _chat_turns, _column, _text, _turn_list

FIELD = "data.data_file_path"
COLUMNS = ("prompt", "chosen", "rejected")
FORMAT = "prompt/chosen/rejected"


@dataclass
class Pair:
    """One preference example: prompt turns and the chosen and rejected completion turns."""

    prompt: list[dict[str, str]]
    chosen: list[dict[str, str]]
    rejected: list[dict[str, str]]

    def chosen_chat(self) -> Chat:
        """Prompt plus the chosen answer, as a chat (for sizing, samples and try-it)."""
        return Chat(self.prompt + self.chosen)

    def rejected_chat(self) -> Chat:
        """Prompt plus the rejected answer, as a chat."""
        return Chat(self.prompt + self.rejected)

    @property
    def turns(self) -> list[dict[str, str]]:
        """The chosen chat's turns (what a sample generation answers)."""
        return self.prompt + self.chosen


def _is_turns(value: Any) -> bool:
    return isinstance(value, list) or (isinstance(value, str) and value.lstrip().startswith("[{"))


def _turns(value: Any, what: str, where: str, role: str) -> list[dict[str, str]]:
    """A cell as turns: messages as they are, text as one turn of `role`."""
    if _is_turns(value):
        return _chat_turns(_turn_list(value, what, where), "role", "content", where)
    text = _text(value, what, where, required=False)
    return [{"role": role, "content": text}] if text.strip() else []


def _shared_prefix(a: list[dict[str, str]], b: list[dict[str, str]]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _completion(turns: list[dict[str, str]], what: str, where: str) -> list[dict[str, str]]:
    """The completion turns, refused when they hold no assistant text."""
    if not any(t["role"] == "assistant" and t["content"].strip() for t in turns):
        raise UserError(
            f"empty {what} answer",
            where=where,
            hint=f"every pair needs a non-empty {what} answer; fill it in or remove the row",
            field=FIELD,
        )
    for n, turn in enumerate(turns, 1):
        if turn["role"] == "assistant" and not turn["content"].strip():
            raise UserError(
                f"empty assistant turn {n} in the {what} answer",
                where=where,
                hint="fill it in or remove the row",
                field=FIELD,
            )
    return turns


def normalise_pair(record: dict[str, Any], where: str) -> Pair:
    """One row as a checked Pair (a UserError names the row and says how to fix it)."""
    prompt = _turns(_column(record, "prompt", {}), "prompt", where, "user")
    chosen = _turns(_column(record, "chosen", {}), "chosen", where, "assistant")
    rejected = _turns(_column(record, "rejected", {}), "rejected", where, "assistant")
    if prompt and chosen[: len(prompt)] == prompt and rejected[: len(prompt)] == prompt:
        chosen, rejected = chosen[len(prompt) :], rejected[len(prompt) :]
    elif not prompt or any(t["role"] != "assistant" for t in chosen + rejected):
        shared = _shared_prefix(chosen, rejected)
        # the prompt ends before the first answer that differs (its leading turns are shared)
        while shared and chosen[shared - 1]["role"] == "assistant" and shared == len(chosen):
            shared -= 1
        prompt, chosen, rejected = prompt + chosen[:shared], chosen[shared:], rejected[shared:]
    if not prompt:
        raise UserError(
            "empty prompt",
            where=where,
            hint="give a prompt, or chosen / rejected conversations that start with the prompt",
            field=FIELD,
        )
    chosen = _completion(chosen, "chosen", where)
    rejected = _completion(rejected, "rejected", where)
    if chosen == rejected:
        raise UserError(
            "chosen and rejected are the same",
            where=where,
            hint="a pair needs two different answers to prefer one; fix or remove the row",
            field=FIELD,
        )
    return Pair(prompt, chosen, rejected)


def check_columns(columns: list[str], where: str) -> None:
    """Refuse data without chosen / rejected (or without a prompt where the answers need one)."""
    present = {c.lower() for c in columns}
    missing = [c for c in ("chosen", "rejected") if c not in present]
    if missing:
        raise UserError(
            f"preference data needs a '{missing[0]}' column",
            where=where,
            hint=(
                f"columns are: {', '.join(columns)}; each row needs prompt, chosen and rejected "
                "(text or chat messages)"
            ),
            field=FIELD,
        )


def pairs_of(source: Any, split: str, column_map: str = "", limit: int = 0) -> tuple[list, str]:
    """A split's rows as checked pairs, and the format's name."""
    from engine.tasks.causal_lm.data import records

    where = str(source.path) if source.path else source.name
    check_columns(source.columns, where)
    rows = records(source, split)
    if limit:
        rows = rows[:limit]
    pairs = [normalise_pair(r, source.locate(split, i)) for i, r in enumerate(rows)]
    if "prompt" not in {c.lower() for c in source.columns}:
        return pairs, "chosen/rejected conversations"
    return pairs, FORMAT
