"""Classification data: a file's rows -> train / validation texts and label ids, checked."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core.errors import UserError
from engine.data.readers import EVAL_SPLITS, LABEL_NAMES, TEXT_NAMES, Table
from engine.data.sources import Source, apply_slice, open_source, parse_split


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
        labels = self.train_labels
        counts = Counter(labels if isinstance(labels, list) else labels.tolist())
        return {self.id2label[i]: counts.get(i, 0) for i in sorted(self.id2label)}


def pick_column(
    columns: list[str],
    wanted: str,
    names: tuple[str, ...],
    what: str,
    table: Any,
    field_name: str,
) -> str:
    """The requested column, or the first common name present; error lists what exists."""
    guessed = (
        " (the file has no header row, so these names are guesses)"
        if (table.guessed_columns)
        else ""
    )
    where = str(table.path) if table.path else table.name
    if wanted:
        if wanted in columns:
            return wanted
        raise UserError(
            f"no {what} column '{wanted}'",
            where=where,
            hint=f"columns are: {', '.join(columns)}{guessed}",
            field=field_name,
        )
    lower = {c.lower(): c for c in columns}
    for name in names:
        if name in lower:
            return lower[name]
    raise UserError(
        f"cannot find a {what} column",
        where=where,
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
            return [v for v in as_ints if v is not None]
    kinds = {type(v).__name__ if not isinstance(v, bool) else "bool" for v in labels}
    if len(kinds) > 1:
        first: dict[str, int] = {}
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


def stratified_split(labels: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    """Indices (train, held out): `fraction` of each class held out, seeded."""
    from engine.tasks.classification.columns import LAZY_ROWS

    if len(labels) > LAZY_ROWS:
        return _stratified_split_numpy(labels, fraction, seed)
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


def _stratified_split_numpy(labels: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    """The same split rule for millions of rows, vectorised (index arrays, not lists)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    arr = np.asarray(labels)
    train, held = [], []
    for cls in np.unique(arr):
        idx = np.flatnonzero(arr == cls)
        rng.shuffle(idx)
        k = round(len(idx) * fraction)
        k = min(max(k, 1), len(idx) - 1) if len(idx) >= 2 else 0
        held.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def _rows_of(source: Source, split: str, text_col: str, label_col: str) -> tuple[Any, list[Any]]:
    """Texts and raw labels of a split, checked, from whichever reader loaded the data."""
    if source.table is not None:  # our own reader: rows with real line numbers
        texts, labels = _extract(source.table, split, text_col, label_col)
        return texts, _normalise_labels(labels, source.table, split)
    from engine.tasks.classification.columns import extract_columns

    return extract_columns(source, split, text_col, label_col)


def _read_eval_file(
    data_cfg: Any, text_col: str, label_col: str, cache_dir: Path | None
) -> tuple[Any, list[Any]]:
    esource = open_source(
        data_cfg.eval_file_path,
        field_name="data.eval_file_path",
        cache_dir=cache_dir,
        columns=(data_cfg.text_column, data_cfg.label_column),
    )
    # The training data's column names when the eval file has them, else detect afresh.
    etext = pick_column(
        esource.columns,
        data_cfg.text_column or (text_col if text_col in esource.columns else ""),
        TEXT_NAMES,
        "text",
        esource,
        "data.text_column",
    )
    elabel = pick_column(
        esource.columns,
        data_cfg.label_column or (label_col if label_col in esource.columns else ""),
        LABEL_NAMES,
        "label",
        esource,
        "data.label_column",
    )
    return _rows_of(esource, esource.eval_split or esource.train_split, etext, elabel)


def load_splits(data_cfg: Any, seed: int = 42, cache_dir: Path | None = None) -> Splits:
    """Read the configured data into train / evaluation texts and label ids."""
    source = open_source(
        data_cfg.data_file_path,
        config=data_cfg.data_config,
        split=data_cfg.data_split,
        cache_dir=cache_dir,
        columns=(data_cfg.text_column, data_cfg.label_column),
    )
    where = str(source.path) if source.path else source.name
    text_col = pick_column(
        source.columns, data_cfg.text_column, TEXT_NAMES, "text", source, "data.text_column"
    )
    label_col = pick_column(
        source.columns, data_cfg.label_column, LABEL_NAMES, "label", source, "data.label_column"
    )
    if text_col == label_col:
        raise UserError(
            f"text and label are the same column '{text_col}'",
            where=where,
            hint="choose two different columns",
            field="data.label_column",
        )
    train_split = source.train_split
    _check_train_split(source, data_cfg, where)
    if data_cfg.max_train_rows:
        ds = source.splits[train_split]
        source.splits[train_split] = ds.select(range(min(len(ds), data_cfg.max_train_rows)))
        if source.table is not None:
            rows = source.table.splits[train_split]
            source.table.splits[train_split] = rows[: data_cfg.max_train_rows]
    texts, raw_labels = _rows_of(source, train_split, text_col, label_col)

    eval_texts: Any = []
    eval_raw: list[Any] = []
    eval_source = "none"
    if data_cfg.eval_file_path:
        eval_texts, eval_raw = _read_eval_file(data_cfg, text_col, label_col, cache_dir)
        eval_source = "eval file"
    elif data_cfg.eval_split or source.eval_split:
        name = _eval_split_name(source, data_cfg)
        eval_texts, eval_raw = _rows_of(source, name, text_col, label_col)
        eval_source = "file split"
    return _assemble(
        data_cfg,
        seed,
        source,
        where,
        (text_col, label_col),
        texts,
        raw_labels,
        eval_texts,
        eval_raw,
        eval_source,
    )


def _check_train_split(source: Source, data_cfg: Any, where: str) -> None:
    """Data with named splits but none for training is refused (never train on the eval set)."""
    names = set(source.splits)
    if len(names) >= 1 and not data_cfg.data_split and names <= set(EVAL_SPLITS) | {"test"}:
        raise UserError(
            f"no training split: the data has only {', '.join(sorted(names))}",
            where=where,
            hint="add a 'train' split, or name one with --data_split (e.g. validation[:80%])",
            field="data.data_file_path",
        )


def _eval_split_name(source: Source, data_cfg: Any) -> str:
    if not data_cfg.eval_split:
        return source.eval_split or ""
    name, start, stop = parse_split(data_cfg.eval_split)
    if name not in source.splits:
        raise UserError(
            f"no split '{name}' in this data",
            where=source.name,
            hint=f"splits are: {', '.join(source.splits)}",
            field="data.eval_split",
        )
    source.splits[name] = apply_slice(source.splits[name], start, stop)
    if source.table is not None and (start or stop):
        raise UserError(
            "a slice of the evaluation split needs data that datasets can read",
            where=source.name,
            hint="use the whole split, or a separate --eval_file_path",
            field="data.eval_split",
        )
    return name


def _assemble(
    data_cfg: Any,
    seed: int,
    source: Source,
    where: str,
    cols: tuple[str, str],
    texts: Any,
    raw_labels: list[Any],
    eval_texts: Any,
    eval_raw: list[Any],
    eval_source: str,
) -> Splits:
    """Label ids, the held-out share and the row caps: the Splits the task trains on."""
    names = sorted(set(raw_labels), key=lambda v: (isinstance(v, str), v))
    if len(names) < 2:
        raise UserError(
            f"only one class in the training data ({names[0]!r})",
            where=where,
            hint="a classifier needs at least two labels; check the label column",
            field="data.label_column",
        )
    label2id = {v: i for i, v in enumerate(names)}
    labels: Any = [label2id[v] for v in raw_labels]
    if not isinstance(texts, list):  # big data: label ids as an array, not a list of ints
        import numpy as np

        labels = np.asarray(labels, dtype=np.int64)
    if eval_raw:
        eval_labels = _eval_label_ids(data_cfg, where, label2id, raw_labels, eval_raw)
    elif data_cfg.validation_fraction > 0 and len(texts) >= 4:
        train_idx, held_idx = stratified_split(labels, data_cfg.validation_fraction, seed)
        eval_texts = _take(texts, held_idx)
        eval_labels = _pick(labels, held_idx)
        texts = _take(texts, train_idx)
        labels = _pick(labels, train_idx)
        eval_source = "held out"
    else:
        eval_labels = []
    if data_cfg.max_eval_rows:
        eval_texts = _take(eval_texts, range(min(len(eval_texts), data_cfg.max_eval_rows)))
        eval_labels = eval_labels[: data_cfg.max_eval_rows]
    id2label = {i: str(v) for v, i in label2id.items()}
    label_names = [n.strip() for n in getattr(data_cfg, "label_names", "").split(",") if n.strip()]
    if label_names:
        id2label = _named(id2label, label_names, where)
    return Splits(
        texts,
        labels,
        eval_texts,
        eval_labels,
        id2label,
        cols[0],
        cols[1],
        source.format,
        eval_source,
    )


def _named(id2label: dict[int, str], names: list[str], where: str) -> dict[int, str]:
    """Names for int labels 0..n-1, in order (--label_names negative,positive)."""
    if len(names) != len(id2label) or len(set(names)) != len(names):
        raise UserError(
            f"label_names gives {len(names)} names for {len(id2label)} classes",
            where=where,
            hint="give one distinct name per class, in the order of the class numbers",
            field="data.label_names",
        )
    return {i: names[i] for i in sorted(id2label)}


def _eval_label_ids(
    data_cfg: Any, where: str, label2id: dict[Any, int], raw: list[Any], eval_raw: list[Any]
) -> list[int]:
    if {type(v) for v in eval_raw} != {type(v) for v in raw}:
        raise UserError(
            "evaluation labels are of another type than training labels",
            where=data_cfg.eval_file_path or where,
            hint="use the same label names in both",
            field="data.eval_file_path",
        )
    unseen = sorted({str(v) for v in eval_raw if v not in label2id})
    if unseen:
        raise UserError(
            f"evaluation labels not in the training data: {', '.join(unseen[:5])}",
            where=data_cfg.eval_file_path or where,
            hint="every evaluation label must occur in training",
            field="data.eval_file_path",
        )
    return [label2id[v] for v in eval_raw]


def _pick(labels: Any, indices: Any) -> Any:
    """Label ids at these positions (list in, list out; array in, array out)."""
    if isinstance(labels, list):
        return [labels[i] for i in indices]
    return labels[indices]


def _take(texts: Any, indices: Any) -> Any:
    """The texts at these positions (a list, or a lazy view for Arrow-backed texts)."""
    if isinstance(texts, list):
        return [texts[i] for i in indices]
    return texts.take(indices)
