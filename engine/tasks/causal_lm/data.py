"""Read SFT data into chats: train and evaluation splits (a file split, an eval file or held out)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.tasks.causal_lm.formats import Chat, normalise_all


@dataclass
class ChatSplits:
    """Training and evaluation chats, the detected format and where evaluation comes from."""

    train: list[Chat]
    eval: list[Chat]
    format: str
    eval_source: str  # "file split", "eval file", "held out", "none"
    columns: list[str]


def _read(
    path: str, data_cfg: Any, field_name: str, split_kind: str
) -> tuple[list[Chat], Any, str, str]:
    """Chats of a file's training (or evaluation) split, its table and detected format."""
    from engine.readers import read_table

    table = read_table(path, field_name=field_name)
    split = (table.eval_split or table.train_split) if split_kind == "eval" else table.train_split
    rows = [{k: v for k, v in r.items() if k != "__line__"} for r in table.splits[split]]
    columns = [c for c in table.columns if c != "__line__"]
    chats, fmt = normalise_all(
        rows,
        columns,
        getattr(data_cfg, "column_map", ""),
        source=str(table.path),
        locate=lambda i: table.locate(split, i),
    )
    return chats, table, fmt, split


def load_chats(data_cfg: Any, seed: int = 42) -> ChatSplits:
    """The configured data as chats; every problem is a UserError naming the file and row."""
    if not data_cfg.data_file_path:
        raise UserError(
            "instruction tuning needs a data file",
            where="data.data_file_path",
            hint="give a JSONL of messages, prompt/completion, Alpaca or ShareGPT records",
            field="data.data_file_path",
        )
    path = str(Path(data_cfg.data_file_path).expanduser())
    train, table, fmt, train_split = _read(path, data_cfg, "data.data_file_path", "train")
    if data_cfg.max_train_rows:
        train = train[: data_cfg.max_train_rows]
    evals: list[Chat] = []
    source = "none"
    if data_cfg.eval_file_path:
        evals = _read(data_cfg.eval_file_path, data_cfg, "data.eval_file_path", "eval")[0]
        source = "eval file"
    elif table.eval_split:
        rows = [
            {k: v for k, v in r.items() if k != "__line__"} for r in table.splits[table.eval_split]
        ]
        evals = normalise_all(
            rows,
            [c for c in table.columns if c != "__line__"],
            getattr(data_cfg, "column_map", ""),
            source=str(table.path),
            locate=lambda i: table.locate(table.eval_split, i),
        )[0]
        source = "file split"
    elif data_cfg.validation_fraction > 0 and len(train) >= 4:
        order = list(range(len(train)))
        random.Random(seed).shuffle(order)
        n_eval = max(1, round(len(train) * data_cfg.validation_fraction))
        held = set(order[:n_eval])
        evals = [c for i, c in enumerate(train) if i in held]
        train = [c for i, c in enumerate(train) if i not in held]
        source = "held out"
    if data_cfg.max_eval_rows:
        evals = evals[: data_cfg.max_eval_rows]
    return ChatSplits(train, evals, fmt, source if evals else "none", list(table.columns))


def describe(splits: ChatSplits) -> str:
    """One line about the chats: format, sizes, turns."""
    turns = Counter(sum(t["role"] == "assistant" for t in c.turns) for c in splits.train)
    multi = sum(n for k, n in turns.items() if k > 1)
    extra = f", {multi} multi-turn" if multi else ""
    return (
        f"{len(splits.train)} train / {len(splits.eval)} eval chats ({splits.format}{extra}; "
        f"eval: {splits.eval_source})"
    )
