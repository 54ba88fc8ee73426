"""SFT data formats: detect them from the columns and normalise every record to chat turns."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.core.errors import UserError

# Canonical column names a column map may point at (data.column_map "prompt=question,...").
CANONICAL = (
    "text",
    "prompt",
    "completion",
    "messages",
    "conversations",
    "instruction",
    "input",
    "output",
    "system",
)
ROLES = ("system", "user", "assistant")
# Role names seen in the wild (OpenAI, ShareGPT, Gemma, Vicuna dumps) -> ours.
ROLE_ALIASES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "chatgpt": "assistant",
}
LABEL_LIKE = ("label", "labels", "class", "category", "sentiment", "intent", "target", "gold_label")
TEXT_LIKE = ("text", "sentence", "review", "content", "document", "tweet", "comment")
FIELD = "data.data_file_path"


@dataclass
class Chat:
    """One training example: chat turns ({"role", "content"}), or raw text when `raw` is set."""

    turns: list[dict[str, str]] = field(default_factory=list)
    raw: bool = False  # plain `text`: no template, every token trained

    @property
    def text(self) -> str:
        """The raw text of a `text` example."""
        return self.turns[0]["content"] if self.raw else ""

    def prompt_turns(self) -> list[dict[str, str]]:
        """The turns before the last assistant answer (all turns when there is no answer)."""
        last = self.last_answer_index()
        return self.turns[:last] if last is not None else list(self.turns)

    def last_answer_index(self) -> int | None:
        """Index of the last assistant turn, if any."""
        for i in range(len(self.turns) - 1, -1, -1):
            if self.turns[i]["role"] == "assistant":
                return i
        return None

    def reference(self) -> str:
        """The last assistant answer ('' when none)."""
        last = self.last_answer_index()
        return self.turns[last]["content"] if last is not None else ""


def parse_column_map(text: str) -> dict[str, str]:
    """'prompt=question,completion=answer' -> {'prompt': 'question', 'completion': 'answer'}."""
    mapping: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not key or not value:
            raise UserError(
                f"bad column map entry '{part}'",
                where="data.column_map",
                hint="write name=column pairs, e.g. prompt=question,completion=answer",
                field="data.column_map",
            )
        if key not in CANONICAL:
            raise UserError(
                f"unknown name '{key}' in the column map",
                where="data.column_map",
                hint="map one of: " + ", ".join(CANONICAL),
                field="data.column_map",
            )
        mapping[key] = value
    return mapping


def apply_column_map(columns: list[str], mapping: dict[str, str], where: str) -> dict[str, str]:
    """Canonical name -> file column, checking every mapped column exists."""
    missing = [col for col in mapping.values() if col not in columns]
    if missing:
        raise UserError(
            f"column map names columns not in the data: {', '.join(missing)}",
            where=where,
            hint="columns are: " + ", ".join(columns),
            field="data.column_map",
        )
    return dict(mapping)


def detect_format(
    columns: list[str],
    mapping: dict[str, str] | None = None,
    where: str = "",
    need_answer: bool = True,
) -> str:
    """The SFT format of a table from its column names (after the column map); prompts to
    complete (`need_answer=False`) may lack the answer column."""
    mapped = set(mapping or {})
    present = {c.lower() for c in columns} | mapped
    if "messages" in present:
        return "messages"
    if "conversations" in present:
        return "sharegpt"
    if {"instruction", "output"} <= present or (not need_answer and "instruction" in present):
        return "alpaca"
    if {"prompt", "completion"} <= present or (not need_answer and "prompt" in present):
        return "prompt-completion"
    label = next((c for c in columns if c.lower() in LABEL_LIKE), None)
    text = next((c for c in columns if c.lower() in TEXT_LIKE), None)
    if label and text and "text" not in mapped:
        raise UserError(
            f"this looks like text+label classification data (columns '{text}' and '{label}')",
            where=where,
            hint="use --task classification, or map the columns with data.column_map",
            field="task",
        )
    if "text" in present:
        return "text"
    raise UserError(
        "cannot tell the instruction format from the columns",
        where=where,
        hint=(
            f"columns are: {', '.join(columns)}; use text, prompt+completion, messages, "
            "instruction/input/output or conversations, or set data.column_map "
            "(e.g. prompt=question,completion=answer)"
        ),
        field="data.column_map",
    )


def _column(record: dict[str, Any], name: str, mapping: dict[str, str]) -> Any:
    """A canonical field of a record (mapped, else exact, else case-insensitive)."""
    if name in mapping:
        return record.get(mapping[name])
    if name in record:
        return record[name]
    for key, value in record.items():
        if isinstance(key, str) and key.lower() == name:
            return value
    return None


def _text(value: Any, what: str, where: str, *, required: bool = True) -> str:
    """A cell as text; None / NaN count as empty."""
    if value is None or (isinstance(value, float) and value != value):
        value = ""
    if isinstance(value, (dict, list)):
        raise UserError(f"{what} must be text, not {type(value).__name__}", where=where)
    text = str(value)
    if required and not text.strip():
        raise UserError(
            f"empty {what}", where=where, hint="fill it in or remove the row", field=FIELD
        )
    return text


def _turn_list(value: Any, what: str, where: str) -> list[Any]:
    """A list of turns; JSON text (a CSV cell) is decoded."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except ValueError:
            raise UserError(f"'{what}' is not valid JSON", where=where, field=FIELD) from None
    if not isinstance(value, list) or not value:
        raise UserError(
            f"'{what}' must be a non-empty list of turns",
            where=where,
            hint='e.g. [{"role": "user", "content": "..."}, ...]',
            field=FIELD,
        )
    return value


def _role(raw: Any, where: str) -> str:
    role = ROLE_ALIASES.get(str(raw).strip().lower()) if raw is not None else None
    if role is None:
        raise UserError(
            f"unknown role '{raw}'",
            where=where,
            hint="roles must be system, user or assistant (ShareGPT: system, human, gpt)",
            field=FIELD,
        )
    return role


def _chat_turns(items: list[Any], role_key: str, text_key: str, where: str) -> list[dict[str, str]]:
    turns = []
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict) or role_key not in item:
            raise UserError(
                f"turn {n} has no '{role_key}'",
                where=where,
                hint=f"each turn needs '{role_key}' and '{text_key}'",
                field=FIELD,
            )
        role = _role(item[role_key], f"{where} turn {n}")
        content = _text(item.get(text_key), f"{role} message", f"{where} turn {n}", required=False)
        turns.append({"role": role, "content": content})
    return turns


def _prompt_turns(value: Any, where: str) -> list[dict[str, str]]:
    """A prompt: text (one user turn) or a list of messages (TRL's conversational form)."""
    if isinstance(value, list) or (isinstance(value, str) and value.lstrip().startswith("[{")):
        return _chat_turns(_turn_list(value, "prompt", where), "role", "content", where)
    return [{"role": "user", "content": _text(value, "prompt", where)}]


def normalise(
    record: dict[str, Any],
    fmt: str,
    mapping: dict[str, str] | None = None,
    where: str = "",
    *,
    need_answer: bool = True,
) -> Chat:
    """One record of format `fmt` as a Chat; `need_answer=False` for prompts to complete."""
    m = mapping or {}
    if fmt == "text":
        return Chat(
            [{"role": "text", "content": _text(_column(record, "text", m), "text", where)}], True
        )
    if fmt == "prompt-completion":
        turns = _prompt_turns(_column(record, "prompt", m), where)
        completion = _column(record, "completion", m)
        if isinstance(completion, list):
            turns += _chat_turns(completion, "role", "content", where)
        elif need_answer or completion not in (None, ""):
            answer = _text(completion, "completion (the answer)", where, required=need_answer)
            turns.append({"role": "assistant", "content": answer})
    elif fmt == "alpaca":
        instruction = _text(_column(record, "instruction", m), "instruction", where)
        extra = _text(_column(record, "input", m), "input", where, required=False)
        system = _text(_column(record, "system", m), "system", where, required=False)
        turns = [{"role": "system", "content": system}] if system.strip() else []
        user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        turns.append({"role": "user", "content": user})
        output = _column(record, "output", m)
        if need_answer or output not in (None, ""):
            turns.append(
                {
                    "role": "assistant",
                    "content": _text(output, "output (the answer)", where, required=need_answer),
                }
            )
    elif fmt in ("messages", "sharegpt"):
        name = "messages" if fmt == "messages" else "conversations"
        items = _turn_list(_column(record, name, m), name, where)
        keys = ("role", "content") if fmt == "messages" else ("from", "value")
        if fmt == "messages" and items and isinstance(items[0], dict) and "from" in items[0]:
            keys = ("from", "value")  # ShareGPT turns under a `messages` column
        elif fmt == "sharegpt" and items and isinstance(items[0], dict) and "role" in items[0]:
            keys = ("role", "content")
        turns = _chat_turns(items, keys[0], keys[1], where)
    else:  # pragma: no cover - detect_format only returns the above
        raise ValueError(fmt)
    return _checked(Chat(turns), where, need_answer)


def _checked(chat: Chat, where: str, need_answer: bool) -> Chat:
    """Every answer non-empty, and at least one answer when training."""
    for n, turn in enumerate(chat.turns, 1):
        if turn["role"] == "assistant" and not turn["content"].strip() and need_answer:
            raise UserError(
                f"empty answer in turn {n}",
                where=where,
                hint="every assistant turn needs text to learn from; fill it in or remove the row",
                field=FIELD,
            )
    if need_answer and chat.last_answer_index() is None:
        raise UserError(
            "no assistant answer to learn from",
            where=where,
            hint="each example needs at least one assistant (gpt) turn",
            field=FIELD,
        )
    return chat


def normalise_all(
    records: Iterable[dict[str, Any]],
    columns: list[str],
    column_map: str = "",
    source: str = "data",
    locate: Callable[[int], str] | None = None,
    *,
    need_answer: bool = True,
) -> tuple[list[Chat], str]:
    """Every record as a Chat, plus the detected format; `locate(i)` names row i in errors."""
    name = locate or (lambda i: f"{source} row {i + 1}")
    mapping = apply_column_map(columns, parse_column_map(column_map), source)
    fmt = detect_format(columns, mapping, where=source, need_answer=need_answer)
    chats = [
        normalise(r, fmt, mapping, name(i), need_answer=need_answer) for i, r in enumerate(records)
    ]
    return chats, fmt
