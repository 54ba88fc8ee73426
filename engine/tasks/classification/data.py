"""Classification data: a file's rows -> train / validation texts and label ids, checked."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.readers import EXAMPLE_DATA, LABEL_NAMES, TEXT_NAMES, Table, read_table


@dataclass
class Splits:
    """Tokenizer-ready data: texts and label ids per split, plus the label names."""

    train_texts: list[str]
    train_labels: list[int]
    eval_texts: list[str]
    eval_labels: list[int]
    id2label: dict[int, str]
    text_column: str
    label_column: str
    format: str
    eval_source: str  # "file split", "eval file", "held out", "none"

    @property
    def label_counts(self) -> dict[str, int]:
        """Training examples per label name."""
        counts = Counter(self.train_labels)
        return {self.id2label[i]: counts.get(i, 0) for i in sorted(self.id2label)}


def pick_column(
    columns: list[str],
    wanted: str,
    names: tuple[str, ...],
    what: str,
    table: Table,
    field_name: str,
) -> str:
    """The requested column, or the first common name present; error lists what exists."""
    guessed = (
        " (the file has no header row, so these names are guesses)"
        if (table.guessed_columns)
        else ""
    )
    if wanted:
        if wanted in columns:
            return wanted
        raise UserError(
            f"no {what} column '{wanted}'",
            where=str(table.path),
            hint=f"columns are: {', '.join(columns)}{guessed}",
            field=field_name,
        )
    lower = {c.lower(): c for c in columns}
    for name in names:
        if name in lower:
            return lower[name]
    raise UserError(
        f"cannot find a {what} column",
        where=str(table.path),
        hint=f"columns are: {', '.join(columns)}; set --{field_name.split('.')[-1]}",
        field=field_name,
    )


def _extract(
    table: Table, split: str, text_col: str, label_col: str
) -> tuple[list[str], list[Any]]:
    texts, labels = [], []
    for i, row in enumerate(table.splits[split]):
        where = table.locate(split, i)
        if text_col not in row or label_col not in row:
            missing = text_col if text_col not in row else label_col
            present = ", ".join(k for k in row if k != "__line__") or "nothing"
            raise UserError(
                f"missing '{missing}'",
                where=where,
                hint=f"every row needs a text and a label; this row has: {present}",
                field="data.text_column" if missing == text_col else "data.label_column",
            )
        text, label = row[text_col], row[label_col]
        if text is None or not str(text).strip():
            raise UserError(
                "empty text",
                where=where,
                hint="fill in or remove that row",
                field="data.text_column",
            )
        if label is None or (isinstance(label, str) and not label.strip()):
            raise UserError(
                "missing label",
                where=where,
                hint="fill in or remove that row",
                field="data.label_column",
            )
        if isinstance(label, float) and label.is_integer():
            label = int(label)
        if isinstance(label, (list, dict, float)):
            raise UserError(
                f"label {label!r} is not a class name or number",
                where=where,
                hint="labels must be ints or strings",
                field="data.label_column",
            )
        texts.append(str(text))
        labels.append(label)
    return texts, labels


def _normalise_labels(labels: list[Any], table: Table, split: str) -> list[int | str]:
    """Ints stay ints, digit strings from text files become ints, mixing types is an error."""
    if table.format in ("csv", "tsv"):
        as_ints = [_int_text(v) for v in labels]
        if all(v is not None for v in as_ints):
            return as_ints
    kinds = {type(v).__name__ if not isinstance(v, bool) else "bool" for v in labels}
    if len(kinds) > 1:
        first = {}
        for i, v in enumerate(labels):
            first.setdefault(type(v).__name__, i)
        examples = ", ".join(f"{k} at {table.locate(split, i)}" for k, i in first.items())
        raise UserError(
            f"labels mix types ({examples})",
            where=str(table.path),
            hint="use only numbers or only names for labels",
            field="data.label_column",
        )
    return [v.strip() if isinstance(v, str) else v for v in labels]


def _int_text(value: Any) -> int | None:
    """'3', '-1' or '3.0' (as pandas writes ints with gaps) as an int; None otherwise."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def stratified_split(labels: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, held out): `fraction` of each class held out, seeded."""
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    train, held = [], []
    for idx in by_class.values():
        rng.shuffle(idx)
        k = round(len(idx) * fraction)
        # Every class keeps a training example; a lone example is never held out.
        k = min(max(k, 1), len(idx) - 1) if len(idx) >= 2 else 0
        held += idx[:k]
        train += idx[k:]
    return sorted(train), sorted(held)


def name_labels(label2id: dict[Any, int], names_text: str, where: str) -> dict[int, str]:
    """id -> label name: the data's own labels, or `label_names` for int labels 0..n-1."""
    if not names_text.strip():
        return {i: str(v) for v, i in label2id.items()}
    names = [n.strip() for n in names_text.split(",")]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise UserError(
            f"label_names must be distinct, non-empty names (got '{names_text}')",
            hint="e.g. --label_names negative,positive",
            field="data.label_names",
        )
    values = list(label2id)
    if not all(isinstance(v, int) for v in values):
        raise UserError(
            "label_names names int labels, but this data's labels are already names",
            where=where,
            hint="leave label_names empty",
            field="data.label_names",
        )
    outside = sorted(v for v in values if not 0 <= v < len(names))
    if outside:
        raise UserError(
            f"label_names has {len(names)} names, but the data has label {outside[0]}",
            where=where,
            hint=f"give one name for each label 0..{max(values)}",
            field="data.label_names",
        )
    return {i: names[v] for v, i in label2id.items()}


def load_splits(data_cfg: Any, seed: int = 42) -> Splits:
    """Read the configured data into train / evaluation texts and label ids."""
    path = Path(data_cfg.data_file_path).expanduser() if data_cfg.data_file_path else EXAMPLE_DATA
    table = read_table(path, columns=(data_cfg.text_column, data_cfg.label_column))
    text_col = pick_column(
        table.columns, data_cfg.text_column, TEXT_NAMES, "text", table, "data.text_column"
    )
    label_col = pick_column(
        table.columns, data_cfg.label_column, LABEL_NAMES, "label", table, "data.label_column"
    )
    if text_col == label_col:
        raise UserError(
            f"text and label are the same column '{text_col}'",
            where=str(path),
            hint="choose two different columns",
            field="data.label_column",
        )
    train_split = table.train_split
    if data_cfg.max_train_rows:
        table.splits[train_split] = table.splits[train_split][: data_cfg.max_train_rows]
    texts, raw_labels = _extract(table, train_split, text_col, label_col)
    raw_labels = _normalise_labels(raw_labels, table, train_split)

    eval_texts: list[str] = []
    eval_raw: list[Any] = []
    eval_source = "none"
    if data_cfg.eval_file_path:
        etable = read_table(
            data_cfg.eval_file_path,
            field_name="data.eval_file_path",
            columns=(data_cfg.text_column, data_cfg.label_column),
        )
        # The training file's column names when the eval file has them, else detect afresh.
        etext = pick_column(
            etable.columns,
            data_cfg.text_column or (text_col if text_col in etable.columns else ""),
            TEXT_NAMES,
            "text",
            etable,
            "data.text_column",
        )
        elabel = pick_column(
            etable.columns,
            data_cfg.label_column or (label_col if label_col in etable.columns else ""),
            LABEL_NAMES,
            "label",
            etable,
            "data.label_column",
        )
        esplit = etable.eval_split or etable.train_split
        eval_texts, eval_raw = _extract(etable, esplit, etext, elabel)
        eval_raw = _normalise_labels(eval_raw, etable, esplit)
        eval_source = "eval file"
    elif table.eval_split:
        eval_texts, eval_raw = _extract(table, table.eval_split, text_col, label_col)
        eval_raw = _normalise_labels(eval_raw, table, table.eval_split)
        eval_source = "file split"

    names = sorted(set(raw_labels), key=lambda v: (isinstance(v, str), v))
    if len(names) < 2:
        raise UserError(
            f"only one class in the training data ({names[0]!r})",
            where=str(path),
            hint="a classifier needs at least two labels; check the label column",
            field="data.label_column",
        )
    label2id = {v: i for i, v in enumerate(names)}
    labels = [label2id[v] for v in raw_labels]
    if eval_raw:
        if {type(v) for v in eval_raw} != {type(v) for v in raw_labels}:
            raise UserError(
                "evaluation labels are of another type than training labels",
                where=data_cfg.eval_file_path or str(path),
                hint="use the same label names in both",
                field="data.eval_file_path",
            )
        unseen = sorted({str(v) for v in eval_raw if v not in label2id})
        if unseen:
            raise UserError(
                f"evaluation labels not in the training data: {', '.join(unseen[:5])}",
                where=data_cfg.eval_file_path or str(path),
                hint="every evaluation label must occur in training",
                field="data.eval_file_path",
            )
        eval_labels = [label2id[v] for v in eval_raw]
    elif data_cfg.validation_fraction > 0 and len(texts) >= 4:
        train_idx, held_idx = stratified_split(labels, data_cfg.validation_fraction, seed)
        eval_texts = [texts[i] for i in held_idx]
        eval_labels = [labels[i] for i in held_idx]
        texts = [texts[i] for i in train_idx]
        labels = [labels[i] for i in train_idx]
        eval_source = "held out"
    else:
        eval_labels = []
    if data_cfg.max_eval_rows:
        eval_texts, eval_labels = (
            eval_texts[: data_cfg.max_eval_rows],
            eval_labels[: data_cfg.max_eval_rows],
        )
    return Splits(
        texts,
        labels,
        eval_texts,
        eval_labels,
        name_labels(label2id, getattr(data_cfg, "label_names", ""), str(path)),
        text_col,
        label_col,
        table.format,
        eval_source,
    )
