"""Data sources on `datasets`: local files, `save_to_disk` folders and Hub ids, with clear errors.

`datasets` is fast and memory-maps its Arrow cache, but it takes a bare path for a Hub id, merges
TSV rows on a stray quote, reads "NA" as missing, loads Latin-1 text and reports JSON errors with a
block-relative row number. So every local file is loaded with its builder name and safe options,
checked for UTF-8 first, and a file `datasets` cannot read is read again by our own readers
(engine/data/readers.py), which name the real line.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from engine.core.errors import UserError
from engine.data.readers import (
    EVAL_SPLITS,
    EXAMPLE_DATA,
    FORMATS,
    TRAIN_SPLITS,
    Table,
    detect_format,
    has_header,
    headerless_columns,
    read_table,
)

SAVE_TO_DISK_MARKERS = ("dataset_dict.json", "dataset_info.json", "state.json")
_SLICE = re.compile(r"^\s*([\w.-]+)\s*(?:\[\s*(-?\d+%?)?\s*:\s*(-?\d+%?)?\s*\])?\s*$")


@dataclass
class Source:
    """A data source's splits as (memory-mapped) `datasets.Dataset`s, and how to name a row."""

    name: str
    format: str
    splits: dict[str, Any]
    path: Path | None = None
    guessed_columns: bool = False
    table: Table | None = None  # set when our own reader loaded the file (it knows real lines)
    _lines: dict[str, list[int]] = field(default_factory=dict, repr=False)

    @property
    def columns(self) -> list[str]:
        """Column names of the training split."""
        return [c for c in self.splits[self.train_split].column_names if c != "__line__"]

    @property
    def train_split(self) -> str:
        """Name of the split used for training."""
        return next((s for s in TRAIN_SPLITS if s in self.splits), next(iter(self.splits)))

    @property
    def eval_split(self) -> str | None:
        """Name of the split used for evaluation, if the source has one."""
        return next((s for s in EVAL_SPLITS if s in self.splits and s != self.train_split), None)

    def locate(self, split: str, index: int) -> str:
        """A person's name for a row: the file and its real line, record or row number."""
        if self.table is not None:
            return self.table.locate(split, index)
        label = self.path.name if self.path else self.name
        prefix = label + (f" [{split}]" if len(self.splits) > 1 else "")
        if self.format in ("jsonl", "csv", "tsv", "text") and self.path and split == "train":
            lines = self._line_numbers()
            if index < len(lines):
                return f"{label} line {lines[index]}"
        kind = "record" if self.format == "json" else "row"
        return f"{prefix} {kind} {index + 1}"

    def _line_numbers(self) -> list[int]:
        """The line each row starts on (scanned only when a message needs it)."""
        if "train" not in self._lines:
            assert self.path is not None
            self._lines["train"] = _row_lines(self.path, self.format, self.guessed_columns)
        return self._lines["train"]


def parse_split(spec: str) -> tuple[str, str | None, str | None]:
    """'train[:2000]' -> ('train', None, '2000'); a bad spec is a UserError."""
    match = _SLICE.match(spec)
    if not match:
        raise UserError(
            f"cannot read the split '{spec}'",
            where="data.data_split",
            hint="use a split name with an optional slice: train, train[:2000], train[10%:]",
            field="data.data_split",
        )
    return match.group(1), match.group(2), match.group(3)


def _bound(value: str | None, n: int, default: int) -> int:
    if value is None:
        return default
    k = round(n * int(value[:-1]) / 100) if value.endswith("%") else int(value)
    return max(0, min(n, k + n if k < 0 else k))


def apply_slice(ds: Any, start: str | None, stop: str | None) -> Any:
    """Rows [start:stop] of a dataset (ints or percentages), as a cheap contiguous view."""
    if start is None and stop is None:
        return ds
    n = len(ds)
    lo, hi = _bound(start, n, 0), _bound(stop, n, n)
    return ds.select(range(lo, max(lo, hi)))


def is_save_to_disk(path: Path) -> bool:
    """True for a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`."""
    return path.is_dir() and any((path / m).is_file() for m in SAVE_TO_DISK_MARKERS)


def looks_like_hub_id(spec: str) -> bool:
    """'org/name' or 'name' (no path separators beyond one, no file extension we read)."""
    return (
        not spec.startswith(("/", ".", "~"))
        and spec.count("/") <= 1
        and Path(spec).suffix.lower() not in FORMATS
    )


def open_source(
    spec: str,
    *,
    config: str = "",
    split: str = "",
    field_name: str = "data.data_file_path",
    cache_dir: Path | None = None,
    columns: tuple[str, ...] = (),
) -> Source:
    """Open a file, a save_to_disk folder or a Hub dataset (empty spec = the bundled example)."""
    _quiet_datasets()
    if cache_dir is None:
        from engine.rundir.runs import data_cache_dir

        cache_dir = data_cache_dir()
    path = Path(spec).expanduser() if spec else EXAMPLE_DATA
    if path.exists() or not looks_like_hub_id(spec):
        source = _open_local(path, field_name, cache_dir, tuple(c for c in columns if c))
    else:
        source = _open_hub(spec, config, field_name, cache_dir)
    if split:
        name, start, stop = parse_split(split)
        if name not in source.splits:
            if len(source.splits) == 1 and name == "train":
                name = next(iter(source.splits))
            else:
                raise UserError(
                    f"no split '{name}' in this data",
                    where=source.name,
                    hint=f"splits are: {', '.join(source.splits)}",
                    field="data.data_split",
                )
        source.splits = {name: apply_slice(source.splits[name], start, stop)} | {
            k: v for k, v in source.splits.items() if k != name
        }
    total = sum(len(ds) for ds in source.splits.values())
    if total == 0:
        raise UserError(
            "the data has no rows", where=source.name, hint="add rows", field=field_name
        )
    return source


def _quiet_datasets() -> None:
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # our messages say what failed


def _open_local(
    path: Path, field_name: str, cache_dir: Path | None, columns: tuple[str, ...]
) -> Source:
    if not path.exists():
        raise UserError(
            "data file not found", where=str(path), hint="check the path", field=field_name
        )
    if path.is_dir():
        if is_save_to_disk(path):
            return _open_saved(path, field_name)
        raise UserError(
            "this folder is not a data set saved with save_to_disk",
            where=str(path),
            hint="pick a .json/.jsonl/.csv/.tsv/.parquet/.txt file or a save_to_disk folder",
            field=field_name,
        )
    if not path.is_file():
        raise UserError(
            "not a regular file (a pipe or a device cannot be read twice)",
            where=str(path),
            hint="save the data to a file first",
            field=field_name,
        )
    fmt = detect_format(path)
    if fmt != "parquet":
        check_utf8(path, field_name)
    try:
        if path.stat().st_size == 0 or (fmt != "parquet" and _blank(path)):
            raise UserError(
                "the data file is empty", where=str(path), hint="add rows", field=field_name
            )
        return _load_file(path, fmt, cache_dir, columns)
    except UserError as exc:
        exc.field = exc.field or field_name
        raise


def _load_file(path: Path, fmt: str, cache_dir: Path | None, columns: tuple[str, ...]) -> Source:
    """Load with the builder name and safe options; our reader diagnoses what `datasets` refuses."""
    from datasets import load_dataset

    cache = str(cache_dir) if cache_dir else None
    opts: dict[str, Any] = {}
    guessed = False
    builder = {"jsonl": "json", "tsv": "csv"}.get(fmt, fmt)
    if fmt in ("csv", "tsv"):
        head = _head_records(path, "\t" if fmt == "tsv" else ",")
        guessed = not has_header(head, [c.strip() for c in head[0]], columns) if head else False
        opts = {"keep_default_na": False, "na_values": []}
        if fmt == "tsv":
            opts.update(delimiter="\t", quoting=csv.QUOTE_NONE)
        if guessed:
            opts.update(column_names=headerless_columns(head), header=None)
    splits_of_json = _json_split_keys(path) if fmt == "json" else None
    if splits_of_json is not None and not splits_of_json:
        return _fallback(path, fmt, columns)  # our reader says what is wrong with the object
    try:
        if splits_of_json:
            splits = {
                key.lower(): load_dataset(
                    "json", data_files=str(path), field=key, split="train", cache_dir=cache
                )
                for key in splits_of_json
            }
        else:
            splits = {
                "train": load_dataset(
                    builder, data_files=str(path), split="train", cache_dir=cache, **opts
                )
            }
    except UserError:
        raise
    except Exception:  # noqa: BLE001 - any parse failure: our reader finds the line
        return _fallback(path, fmt, columns)
    if fmt == "text":
        splits = {k: v.filter(lambda r: bool(r["text"].strip())) for k, v in splits.items()}
    if any(_has_json_columns(ds) for ds in splits.values()):
        # Mixed value types became a Json() column: read it ourselves to say where.
        return _fallback(path, fmt, columns)
    return Source(path.name, fmt, splits, path, guessed)


def _fallback(path: Path, fmt: str, columns: tuple[str, ...]) -> Source:
    """Read with our own reader: precise errors, or rows `datasets` would have mangled."""
    from datasets import Dataset

    table = read_table(path, columns=columns)
    splits = {}
    for name, rows in table.splits.items():
        clean = [{k: v for k, v in r.items() if k != "__line__"} for r in rows]
        splits[name] = _from_rows(Dataset, clean, table.columns)
    return Source(path.name, table.format, splits, path, table.guessed_columns, table)


def _from_rows(dataset_cls: Any, rows: list[dict[str, Any]], columns: list[str]) -> Any:
    """An in-memory Dataset of rows whose values may mix types (kept as Python objects)."""
    import pyarrow as pa

    data = {c: [r.get(c) for r in rows] for c in columns}
    try:
        return dataset_cls(pa.table(data))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Mixed types: keep the values as JSON text, decoded again by the task's checks.
        return dataset_cls(pa.table({c: [json.dumps(v) for v in vs] for c, vs in data.items()}))


def _has_json_columns(ds: Any) -> bool:
    return any(type(f).__name__ == "Json" for f in ds.features.values())


def _open_saved(path: Path, field_name: str) -> Source:
    from datasets import DatasetDict, load_from_disk

    try:
        loaded = load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001 - a broken or foreign folder
        raise UserError(
            f"cannot read this save_to_disk folder ({type(exc).__name__})",
            where=str(path),
            hint="save it again with Dataset.save_to_disk",
            field=field_name,
        ) from None
    splits = dict(loaded) if isinstance(loaded, DatasetDict) else {"train": loaded}
    return Source(path.name, "arrow", {k.lower(): v for k, v in splits.items()}, path)


def _open_hub(spec: str, config: str, field_name: str, cache_dir: Path | None) -> Source:
    from datasets import DatasetDict, load_dataset

    try:
        loaded = load_dataset(spec, config or None, cache_dir=str(cache_dir) if cache_dir else None)
    except Exception as exc:  # noqa: BLE001 - offline, unknown id, missing config...
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        offline = "offline" in text.lower() or "connection" in text.lower()
        hint = (
            "this machine cannot reach the Hugging Face Hub: download the data elsewhere "
            "(datasets' save_to_disk, or a .jsonl/.csv/.parquet file) and give its path"
            if offline
            else "check the dataset id and --data_config (a config name some datasets need)"
        )
        raise UserError(
            f"cannot load the Hub dataset '{spec}': {text[:200]}",
            where=field_name,
            hint=hint,
            field=field_name,
        ) from None
    splits = dict(loaded) if isinstance(loaded, DatasetDict) else {"train": loaded}
    return Source(spec, "hub", {k.lower(): v for k, v in splits.items()}, None)


def check_utf8(path: Path, field_name: str = "data.data_file_path") -> None:
    """Refuse a file that is not UTF-8, naming the line (datasets would load it garbled)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line += chunk[: exc.start].count(b"\n")
                raise UserError(
                    f"not UTF-8 text (line {line})",
                    where=str(path),
                    hint="save the file as UTF-8",
                    field=field_name,
                ) from None
            line += chunk.count(b"\n")


def _blank(path: Path) -> bool:
    if path.stat().st_size > 1 << 16:
        return False
    return not path.read_bytes().decode("utf-8", errors="replace").lstrip("\ufeff").strip()


def _head_records(path: Path, delimiter: str, limit: int = 201) -> list[list[str]]:
    """The first non-blank records of a CSV / TSV, for header detection."""
    out: list[list[str]] = []
    quoting: Literal[0, 1, 2, 3] = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with path.open(encoding="utf-8-sig", newline="") as fh:
        try:
            for row in csv.reader(fh, delimiter=delimiter, quoting=quoting):
                if row and any(c.strip() for c in row):
                    out.append(row)
                    if len(out) >= limit:
                        break
        except csv.Error:
            pass  # the full read reports it with its line
    return out


def _json_split_keys(path: Path) -> list[str] | None:
    """For a JSON object of splits, its list-valued keys; None for a list or JSON lines."""
    with path.open(encoding="utf-8-sig") as fh:
        head = fh.read(1 << 16).lstrip()
    if not head.startswith("{"):
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except ValueError:
        return None  # JSON lines saved as .json, or broken JSON: the loader decides
    if not isinstance(data, dict):
        return None
    return [k for k, v in data.items() if isinstance(v, list)]


def _row_lines(path: Path, fmt: str, headerless: bool) -> list[int]:
    """The line on which each data row starts (blank lines skipped, quoted newlines counted)."""
    lines: list[int] = []
    with path.open(encoding="utf-8-sig", newline="") as fh:
        if fmt in ("jsonl", "text"):
            lines = [n for n, text in enumerate(fh, 1) if text.strip()]
        else:
            delimiter = "\t" if fmt == "tsv" else ","
            quoting: Literal[0, 1, 2, 3] = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
            reader = csv.reader(fh, delimiter=delimiter, quoting=quoting)
            start = 1
            for row in reader:
                if row and any(c.strip() for c in row):
                    lines.append(start)
                start = reader.line_num + 1
            if not headerless:
                lines = lines[1:]
    return lines
