"""Our own readers (JSON, JSONL, CSV, TSV, Parquet, text): they find the real line of a problem."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.core.errors import UserError

TEXT_NAMES = (
    "text",
    "sentence",
    "content",
    "review",
    "document",
    "body",
    "input",
    "utterance",
    "tweet",
    "comment",
    "query",
    "question",
    "message",
    "sentence1",
)
LABEL_NAMES = (
    "label",
    "labels",
    "class",
    "category",
    "target",
    "sentiment",
    "intent",
    "y",
    "output",
    "gold_label",
)
TRAIN_SPLITS = ("train", "training")
EVAL_SPLITS = ("validation", "valid", "val", "dev", "eval", "evaluation")
FORMATS = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "text",
}
EXAMPLE_DATA = Path(__file__).parent / "example_data" / "reviews.jsonl"


@dataclass
class Table:
    """Raw rows of a data file: columns, rows (dicts) and named splits when the file has them."""

    path: Path
    format: str
    columns: list[str]
    splits: dict[str, list[dict[str, Any]]]
    row_names: dict[str, str] = field(default_factory=dict)  # split -> "line" / "record" / "row"
    first_row_number: dict[str, int] = field(default_factory=dict)
    guessed_columns: bool = False  # a CSV / TSV without a header row: the names are guesses

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The training rows (the first split when there is no 'train')."""
        return self.splits[self.train_split]

    @property
    def train_split(self) -> str:
        """Name of the split used for training."""
        return next((s for s in TRAIN_SPLITS if s in self.splits), next(iter(self.splits)))

    @property
    def eval_split(self) -> str | None:
        """Name of the split used for evaluation, if the file has one."""
        return next((s for s in EVAL_SPLITS if s in self.splits), None)

    def where(self, split: str, index: int) -> str:
        """Human location of a row: file, and line / record number."""
        kind = self.row_names.get(split, "row")
        number = index + self.first_row_number.get(split, 1)
        prefix = f"{self.path.name}" + (f" [{split}]" if len(self.splits) > 1 else "")
        return f"{prefix} {kind} {number}"

    def locate(self, split: str, index: int) -> str:
        """Like `where`, but the real line number for line-based files (blank lines skipped)."""
        row = self.splits[split][index]
        if isinstance(row, dict) and "__line__" in row:
            return f"{self.path.name} line {row['__line__']}"
        return self.where(split, index)


def detect_format(path: Path) -> str:
    """The data format from the file name."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserError(
            f"unknown data format '{path.suffix or '(no extension)'}'",
            where=str(path),
            hint="use .json, .jsonl, .csv, .tsv, .parquet or .txt (one text per line)",
            field="data.data_file_path",
        )
    return fmt


def read_table(
    path: str | Path, *, field_name: str = "data.data_file_path", columns: tuple[str, ...] = ()
) -> Table:
    """Read a data file into rows; every problem is a UserError naming the file and line.

    `columns` are column names the user asked for: in a CSV / TSV whose first row holds them,
    that row is the header even when its names are not common ones.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(
            "data file not found", where=str(p), hint="check the path", field=field_name
        )
    if p.is_dir():
        raise UserError(
            "this is a folder, not a data file",
            where=str(p),
            hint="pick a .json/.jsonl/.csv/.tsv/.parquet file",
            field=field_name,
        )
    fmt = detect_format(p)
    if p.stat().st_size == 0 or (fmt != "parquet" and _blank_file(p)):
        raise UserError(
            "the data file is empty", where=str(p), hint="add labelled rows", field=field_name
        )
    try:
        table = _READERS[fmt](p, tuple(c for c in columns if c))
    except UserError as exc:
        exc.field = exc.field or field_name
        raise
    except UnicodeDecodeError as exc:
        raise UserError(
            f"not UTF-8 text (byte {exc.start})",
            where=str(p),
            hint="save the file as UTF-8",
            field=field_name,
        ) from None
    total = sum(len(rows) for rows in table.splits.values())
    if total == 0:
        raise UserError(
            "the data file has no rows", where=str(p), hint="add labelled rows", field=field_name
        )
    return table


def _blank_file(p: Path) -> bool:
    """True when a text file holds only whitespace (a BOM included)."""
    if p.stat().st_size > 1 << 16:
        return False
    return not p.read_bytes().decode("utf-8", errors="replace").lstrip("\ufeff").strip()


def _read_json(p: Path, wanted: tuple[str, ...] = ()) -> Table:
    text = p.read_text(encoding="utf-8-sig")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if "\n" in text.strip() and text.lstrip().startswith("{"):
            # Looks like JSON lines saved as .json: read it that way.
            return _read_jsonl(p, wanted)
        raise UserError(
            f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            where=str(p),
            hint="fix the JSON, or save one object per line as .jsonl",
        ) from None
    if isinstance(data, dict):
        lists = {k: v for k, v in data.items() if isinstance(v, list)}
        if not lists:
            raise UserError(
                'a JSON object needs lists of records, e.g. {"train": [...]}',
                where=str(p),
                hint='or make the file a list of {"text", "label"}',
            )
        splits = {k.lower(): _check_records(v, p, k) for k, v in lists.items()}
        names = dict.fromkeys(splits, "record")
        return Table(p, "json", _columns(splits), splits, names)
    if isinstance(data, list):
        splits = {"train": _check_records(data, p, None)}
        return Table(p, "json", _columns(splits), splits, {"train": "record"})
    raise UserError(
        "JSON must be a list of records or an object of splits",
        where=str(p),
        hint='e.g. [{"text": "great film", "label": "pos"}]',
    )


def _check_records(items: list[Any], p: Path, split: str | None) -> list[dict[str, Any]]:
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            where = f"{p.name}" + (f" [{split}]" if split else "") + f" record {i + 1}"
            raise UserError(
                f'expected an object like {{"text": ..., "label": ...}}, got {type(item).__name__}',
                where=where,
                hint="fix that record",
            )
    return items


def _read_jsonl(p: Path, wanted: tuple[str, ...] = ()) -> Table:
    rows: list[dict[str, Any]] = []
    with p.open(encoding="utf-8-sig") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(
                    f"not valid JSON: {exc.msg} (column {exc.colno})",
                    where=f"{p} line {n}",
                    hint="each line must be one JSON object",
                ) from None
            if not isinstance(item, dict):
                raise UserError(
                    f"expected a JSON object, got {type(item).__name__}",
                    where=f"{p} line {n}",
                    hint="each line must be one JSON object",
                )
            item["__line__"] = n
            rows.append(item)
    table = Table(p, "jsonl", _columns({"train": rows}), {"train": rows}, {"train": "line"})
    return table


def _read_delimited(p: Path, delimiter: str, wanted: tuple[str, ...] = ()) -> Table:
    raw: list[list[str]] = []
    lines: list[int] = []  # the line each record starts on (blank lines and quoted newlines count)
    with p.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(
            fh,
            delimiter=delimiter,
            quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL,
        )
        try:
            start = 1
            for r in reader:
                if r and any(c.strip() for c in r):
                    raw.append(r)
                    lines.append(start)
                start = reader.line_num + 1
        except csv.Error as exc:
            raise UserError(
                f"cannot parse: {exc}",
                where=f"{p} line {reader.line_num}",
                hint="check the quoting on that line",
            ) from None
    if not raw:
        raise UserError("the data file has no rows", where=str(p), hint="add labelled rows")
    header = [c.strip() for c in raw[0]]
    headed = has_header(raw, header, wanted)
    if headed:
        columns, body, body_lines = header, raw[1:], lines[1:]
    else:
        columns, body, body_lines = headerless_columns(raw), raw, lines
    rows = []
    for r, line in zip(body, body_lines, strict=True):
        if len(r) != len(columns):
            raise UserError(
                f"expected {len(columns)} fields, found {len(r)}",
                where=f"{p} line {line}",
                hint=f"every row needs: {', '.join(columns)}",
            )
        row: dict[str, Any] = dict(zip(columns, r, strict=True))
        row["__line__"] = line
        rows.append(row)
    fmt = "tsv" if delimiter == "\t" else "csv"
    first = body_lines[0] if body_lines else 2
    return Table(
        p,
        fmt,
        columns,
        {"train": rows},
        {"train": "line"},
        {"train": first},
        guessed_columns=not headed,
    )


def has_header(raw: list[list[str]], header: list[str], wanted: tuple[str, ...]) -> bool:
    """Whether the first row names the columns."""
    known = {n.lower() for n in TEXT_NAMES + LABEL_NAMES}
    if any(c.lower() in known for c in header) or any(w in header for w in wanted):
        return True
    body = raw[1:201]
    if (
        body
        and not any(_looks_numeric(c) for c in header)
        and any(_looks_numeric(c) for c in body[0])
    ):
        return True
    # A label-like column (few distinct values) whose first-row value never occurs below it:
    # that first value is a column name, not a class.
    if len(body) >= 4:
        for i, name in enumerate(header):
            values = {r[i].strip() for r in body if i < len(r)}
            if len(values) <= min(50, len(body) // 2) and name not in values:
                return True
    return False


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def headerless_columns(raw: list[list[str]]) -> list[str]:
    """Name the columns of a file without a header: the wordiest is text, a short one the label."""
    width = len(raw[0])
    if width == 1:
        return ["text"]
    sample = raw[:200]
    avg = [sum(len(r[i]) for r in sample if i < len(r)) / len(sample) for i in range(width)]
    text_i = max(range(width), key=lambda i: avg[i])
    others = [i for i in range(width) if i != text_i]
    label_i = min(others, key=lambda i: len({r[i] for r in sample if i < len(r)}))
    names = [f"column{i + 1}" for i in range(width)]
    names[text_i], names[label_i] = "text", "label"
    return names


def _read_csv(p: Path, wanted: tuple[str, ...] = ()) -> Table:
    return _read_delimited(p, ",", wanted)


def _read_tsv(p: Path, wanted: tuple[str, ...] = ()) -> Table:
    return _read_delimited(p, "\t", wanted)


def _read_parquet(p: Path, wanted: tuple[str, ...] = ()) -> Table:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(p).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise UserError(
            f"cannot read Parquet: {exc}",
            where=str(p),
            hint="re-export the file as Parquet, or use CSV / JSONL",
        ) from None
    return Table(p, "parquet", _columns({"train": rows}), {"train": rows}, {"train": "row"})


def _read_text(p: Path, wanted: tuple[str, ...] = ()) -> Table:
    rows: list[dict[str, Any]] = []
    with p.open(encoding="utf-8-sig") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                rows.append({"text": line.rstrip("\r\n"), "__line__": n})
    return Table(p, "text", ["text"], {"train": rows}, {"train": "line"})


_READERS = {
    "text": _read_text,
    "json": _read_json,
    "jsonl": _read_jsonl,
    "csv": _read_csv,
    "tsv": _read_tsv,
    "parquet": _read_parquet,
}


def _columns(splits: dict[str, list[dict[str, Any]]]) -> list[str]:
    cols: dict[str, None] = {}
    for rows in splits.values():
        for row in rows[:100]:
            cols.update(dict.fromkeys(k for k in row if k != "__line__"))
    return list(cols)
