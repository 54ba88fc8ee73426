"""Read SFT data into chats: train and evaluation splits (a file split, an eval file or held out).

Any source of engine.data.sources works: a file, a `save_to_disk` folder or a Hub dataset id, with
`data_config`, `data_split` and `eval_split`.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core.errors import UserError
from engine.tasks.causal_lm.formats import Chat, normalise_all


@dataclass
class ChatSplits:
    """Training and evaluation chats, the detected format and where evaluation comes from."""

    train: list[Chat]
    eval: list[Chat]
    format: str
    eval_source: str  # "file split", "eval file", "held out", "none"
    columns: list[str]


def records(source: Any, split: str) -> list[dict[str, Any]]:
    """The rows of a source's split as dicts (our reader's rows when it read the file)."""
    rows = source.table.splits[split] if source.table is not None else source.splits[split]
    return [{k: v for k, v in r.items() if k != "__line__"} for r in rows]


def chats_of(source: Any, split: str, column_map: str, limit: int = 0) -> tuple[list[Chat], str]:
    """A split's rows normalised to chats, and the detected format."""
    rows = records(source, split)
    if limit:
        rows = rows[:limit]
    where = str(source.path) if source.path else source.name
    return normalise_all(
        rows, source.columns, column_map, source=where, locate=lambda i: source.locate(split, i)
    )


NO_DATA = (
    "instruction tuning needs data",
    "give a JSONL of messages, prompt/completion, Alpaca or ShareGPT records",
)


def load_chats(
    data_cfg: Any,
    seed: int = 42,
    cache_dir: Path | None = None,
    read: Callable[..., tuple[list[Any], str]] = chats_of,
    no_data: tuple[str, str] = NO_DATA,
) -> ChatSplits:
    """The configured data as chats; every problem is a UserError naming the file and row.

    `read(source, split, column_map, limit)` turns a split's rows into examples (chats here,
    preference pairs for engine.tasks.preference).
    """
    from engine.data.sources import open_source

    if not data_cfg.data_file_path:
        raise UserError(
            no_data[0], where="data.data_file_path", hint=no_data[1], field="data.data_file_path"
        )
    column_map = getattr(data_cfg, "column_map", "")
    source = open_source(
        data_cfg.data_file_path,
        config=getattr(data_cfg, "data_config", ""),
        split=getattr(data_cfg, "data_split", ""),
        cache_dir=cache_dir,
    )
    train, fmt = read(source, source.train_split, column_map, data_cfg.max_train_rows)
    evals: list[Chat] = []
    kind = "none"
    eval_split = getattr(data_cfg, "eval_split", "")
    if data_cfg.eval_file_path:
        esource = open_source(
            data_cfg.eval_file_path, field_name="data.eval_file_path", cache_dir=cache_dir
        )
        evals = read(esource, esource.eval_split or esource.train_split, column_map)[0]
        kind = "eval file"
    elif eval_split or source.eval_split:
        from engine.data.sources import apply_slice, parse_split

        name, start, stop = (
            parse_split(eval_split) if eval_split else (source.eval_split, None, None)
        )
        if name not in source.splits:
            raise UserError(
                f"no split '{name}' in this data",
                where=source.name,
                hint=f"splits are: {', '.join(source.splits)}",
                field="data.eval_split",
            )
        if start or stop:
            source.splits[name] = apply_slice(source.splits[name], start, stop)
            source.table = None  # a slice of our reader's rows is not kept: read datasets' rows
        evals = read(source, name, column_map)[0]
        kind = "file split"
    elif data_cfg.validation_fraction > 0 and len(train) >= 4:
        order = list(range(len(train)))
        random.Random(seed).shuffle(order)
        held = set(order[: max(1, round(len(train) * data_cfg.validation_fraction))])
        evals = [c for i, c in enumerate(train) if i in held]
        train = [c for i, c in enumerate(train) if i not in held]
        kind = "held out"
    if data_cfg.max_eval_rows:
        evals = evals[: data_cfg.max_eval_rows]
    return ChatSplits(train, evals, fmt, kind if evals else "none", source.columns)


def describe(splits: ChatSplits) -> str:
    """One line about the chats: format, sizes, turns."""
    turns = Counter(sum(t["role"] == "assistant" for t in c.turns) for c in splits.train)
    multi = sum(n for k, n in turns.items() if k > 1)
    extra = f", {multi} multi-turn" if multi else ""
    return (
        f"{len(splits.train)} train / {len(splits.eval)} eval chats ({splits.format}{extra}; "
        f"eval: {splits.eval_source})"
    )
