"""Texts and labels from an Arrow-backed split, checked column-wise (millions of rows, no copy)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from engine.core.errors import UserError
from engine.data.sources import Source

# Up to this many rows the texts are plain Python strings (tokenized once, cached); above it they
# stay in the memory-mapped Arrow file and are read and tokenized batch by batch.
LAZY_ROWS = 200_000
_INT_TEXT = re.compile(r"^\s*-?\d+(\.0*)?\s*$")


class ArrowTexts:
    """A read-only sequence of texts over an Arrow column (optionally through row indices)."""

    def __init__(self, column: Any, indices: Any | None = None) -> None:
        self.column = column
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.column)

    def _row(self, i: int) -> int:
        return int(self.indices[i]) if self.indices is not None else i

    def __getitem__(self, i: int) -> str:
        value = self.column[self._row(i)].as_py()
        return "" if value is None else str(value)

    def __iter__(self) -> Iterator[str]:
        for i in range(len(self)):
            yield self[i]

    def take(self, positions: Iterable[int]) -> ArrowTexts:
        """A view of the texts at these positions."""
        import numpy as np

        wanted = np.asarray(positions, dtype=np.int64)
        rows = self.indices[wanted] if self.indices is not None else wanted
        return ArrowTexts(self.column, rows)

    def char_lengths(self) -> Any:
        """Characters per text (a numpy array), for length grouping without tokenizing."""
        import numpy as np
        import pyarrow.compute as pc

        lengths = pc.utf8_length(pc.cast(self.column, "string")).to_numpy(zero_copy_only=False)
        lengths = np.nan_to_num(lengths.astype(np.float64)).astype(np.int64)
        return lengths[self.indices] if self.indices is not None else lengths


def _first(mask: Any) -> int | None:
    """Index of the first true value of a boolean Arrow array, or None."""
    import numpy as np

    hits = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
    return int(hits[0]) if len(hits) else None


def extract_columns(
    source: Source, split: str, text_col: str, label_col: str
) -> tuple[Any, list[Any]]:
    """Checked texts (a list, or ArrowTexts for big data) and raw labels (ints or names)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ds = source.splits[split]
    for col, name in ((text_col, "data.text_column"), (label_col, "data.label_column")):
        if col not in ds.column_names:
            raise UserError(
                f"missing '{col}'",
                where=source.locate(split, 0),
                hint=f"every row needs a text and a label; this split has: "
                f"{', '.join(ds.column_names)}",
                field=name,
            )
    table = ds.with_format("arrow")[:]
    texts, labels = table.column(text_col), table.column(label_col)
    for col, values, name, what in (
        (text_col, texts, "data.text_column", "empty text"),
        (label_col, labels, "data.label_column", "missing label"),
    ):
        bad = _first(pc.is_null(values))
        if bad is not None:
            row = ds[bad]
            present = ", ".join(k for k, v in row.items() if v is not None) or "nothing"
            raise UserError(
                f"{what}: no value for '{col}'",
                where=source.locate(split, bad),
                hint=f"every row needs a text and a label; this row has: {present}",
                field=name,
            )
    if not pa.types.is_string(texts.type) and not pa.types.is_large_string(texts.type):
        texts = pc.cast(texts, pa.string())
    blank = pc.or_kleene(pc.is_null(texts), pc.equal(pc.utf8_trim_whitespace(texts), ""))
    bad = _first(pc.fill_null(blank, True))
    if bad is not None:
        raise UserError(
            "empty text",
            where=source.locate(split, bad),
            hint="fill in or remove that row",
            field="data.text_column",
        )
    raw = _labels(source, split, labels)
    text_values = texts.to_pylist() if len(texts) <= LAZY_ROWS else ArrowTexts(texts)
    return text_values, raw


def _labels(source: Source, split: str, labels: Any) -> list[Any]:
    """Label values as ints or stripped names; a bad one is a UserError naming its row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = labels.type
    if pa.types.is_nested(kind):
        raise UserError(
            f"labels of type {kind} are not class names or numbers",
            where=source.locate(split, 0),
            hint="labels must be ints or strings",
            field="data.label_column",
        )
    missing = pc.is_null(labels)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        missing = pc.or_kleene(missing, pc.equal(pc.utf8_trim_whitespace(labels), ""))
    bad = _first(pc.fill_null(missing, True))
    if bad is not None:
        raise UserError(
            "missing label",
            where=source.locate(split, bad),
            hint="fill in or remove that row",
            field="data.label_column",
        )
    if pa.types.is_floating(kind):
        fractional = pc.not_equal(pc.floor(labels), labels)
        bad = _first(fractional)
        if bad is not None:
            value = labels[bad].as_py()
            raise UserError(
                f"label {value!r} is not a class name or number",
                where=source.locate(split, bad),
                hint="labels must be ints or strings",
                field="data.label_column",
            )
        return pc.cast(labels, pa.int64()).to_pylist()
    if pa.types.is_integer(kind):
        return labels.to_pylist()
    if pa.types.is_boolean(kind):
        return [str(v) for v in labels.to_pylist()]
    values = [v.strip() for v in pc.cast(labels, pa.string()).to_pylist()]
    if source.format in ("csv", "tsv") and all(_INT_TEXT.match(v) for v in values):
        return [int(float(v)) for v in values]
    return values
