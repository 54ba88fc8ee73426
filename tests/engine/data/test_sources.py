"""Data on `datasets`: every source kind, slices, the library's pitfalls, and the Arrow cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.core.errors import UserError
from engine.data.sources import open_source, parse_split
from engine.tasks.classification.data import load_splits

ROWS = [
    {"text": f"review number {i} was {'good' if i % 2 else 'bad'}", "label": i % 2}
    for i in range(40)
]


@pytest.fixture(autouse=True)
def _offline_root(runs_root: Path) -> Path:
    """Every test here: an isolated runs root (the Arrow cache lives there), no hub access."""
    return runs_root


def data_cfg(path: Path | str, **values: str) -> object:
    cfg = RunConfig()
    cfg.data.data_file_path = str(path)
    for key, value in values.items():
        cfg.set(key, value)
    return cfg.data


def test_save_to_disk_folder_of_splits_loads_with_its_validation(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    folder = tmp_path / "saved"
    DatasetDict(
        {"train": Dataset.from_list(ROWS[:30]), "validation": Dataset.from_list(ROWS[30:])}
    ).save_to_disk(str(folder))
    splits = load_splits(data_cfg(folder))
    assert len(splits.train_texts) == 30 and len(splits.eval_texts) == 10
    assert splits.eval_source == "file split" and splits.format == "arrow"


def test_single_dataset_saved_to_disk_holds_out_a_share(tmp_path: Path) -> None:
    from datasets import Dataset

    folder = tmp_path / "one"
    Dataset.from_list(ROWS).save_to_disk(str(folder))
    splits = load_splits(data_cfg(folder))
    assert splits.eval_source == "held out"
    assert len(splits.train_texts) + len(splits.eval_texts) == 40


def test_data_split_slice_and_eval_split(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    folder = tmp_path / "saved"
    DatasetDict(
        {"train": Dataset.from_list(ROWS), "test": Dataset.from_list(ROWS[:8])}
    ).save_to_disk(str(folder))
    splits = load_splits(data_cfg(folder, data_split="train[:20]", eval_split="test"))
    assert len(splits.train_texts) == 20 and len(splits.eval_texts) == 8
    assert splits.train_texts[0] == ROWS[0]["text"]
    splits = load_splits(data_cfg(folder, data_split="train[50%:]", eval_split="test[:4]"))
    assert len(splits.train_texts) == 20 and splits.train_texts[0] == ROWS[20]["text"]
    assert len(splits.eval_texts) == 4


def test_slice_of_a_local_file(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    splits = load_splits(data_cfg(path, data_split="train[:12]", validation_fraction="0"))
    assert len(splits.train_texts) == 12


@pytest.mark.parametrize("spec", ["train[", "train[a:b]", "[:3]"])
def test_bad_split_spec_is_one_clear_error(spec: str) -> None:
    with pytest.raises(UserError) as err:
        parse_split(spec)
    assert err.value.field == "data.data_split" and "train[:2000]" in err.value.one_line()


def test_unknown_split_lists_the_splits(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    folder = tmp_path / "saved"
    DatasetDict({"train": Dataset.from_list(ROWS)}).save_to_disk(str(folder))
    with pytest.raises(UserError) as err:
        load_splits(data_cfg(folder, eval_split="dev"))
    assert "no split 'dev'" in err.value.one_line() and "train" in err.value.one_line()


def test_hub_id_offline_names_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as err:
        open_source("some-org/some-dataset", config="default")
    text = err.value.one_line()
    assert "some-org/some-dataset" in text and "\n" not in text


def test_folder_that_is_not_a_saved_dataset(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    with pytest.raises(UserError) as err:
        open_source(str(tmp_path / "x"))
    assert "save_to_disk" in err.value.one_line()


def test_json_object_with_only_a_validation_split_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "only_val.json"
    path.write_text(json.dumps({"validation": ROWS}))
    with pytest.raises(UserError) as err:
        load_splits(data_cfg(path))
    assert "no training split" in err.value.one_line()


def test_tsv_leading_quote_does_not_merge_rows(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    lines = ["sentence\tlabel", '"a quoted start\t1', "plain row\t0", 'another " quote\t1']
    lines += [f"row {i}\t{i % 2}" for i in range(10)]
    path.write_text("\n".join(lines) + "\n")
    splits = load_splits(data_cfg(path, validation_fraction="0"))
    assert len(splits.train_texts) == 13
    assert splits.train_texts[0] == '"a quoted start'


def test_na_is_text_not_missing(tmp_path: Path) -> None:
    path = tmp_path / "na.csv"
    path.write_text("text,label\nNA,pos\nnull,neg\nN/A,pos\nfine,neg\n")
    splits = load_splits(data_cfg(path, validation_fraction="0"))
    assert splits.train_texts[:3] == ["NA", "null", "N/A"]


def test_headerless_tsv_gets_column_names(tmp_path: Path) -> None:
    path = tmp_path / "h.tsv"
    path.write_text("".join(f"a rather long review text number {i}\t{i % 2}\n" for i in range(20)))
    splits = load_splits(data_cfg(path, validation_fraction="0"))
    assert len(splits.train_texts) == 20 and splits.text_column == "text"


def test_int_labels_sort_as_numbers_not_strings(tmp_path: Path) -> None:
    path = tmp_path / "n.jsonl"
    rows = [{"text": f"t {i}", "label": [10, 2, 1][i % 3]} for i in range(30)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    splits = load_splits(data_cfg(path, validation_fraction="0"))
    assert splits.id2label == {0: "1", 1: "2", 2: "10"}


def test_mixed_label_types_name_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    rows = [{"text": "a", "label": 1}, {"text": "b", "label": "pos"}, {"text": "c", "label": 0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(UserError) as err:
        load_splits(data_cfg(path))
    text = err.value.one_line()
    assert "labels mix types" in text and "line 1" in text and "line 2" in text


def test_latin1_jsonl_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.jsonl"
    body = "".join(json.dumps(r) + "\n" for r in ROWS[:5]).encode()
    path.write_bytes(body + '{"text": "caf\xe9", "label": 1}\n'.encode("latin-1"))
    with pytest.raises(UserError) as err:
        load_splits(data_cfg(path))
    assert "not UTF-8" in err.value.one_line() and "line 6" in err.value.one_line()


def test_malformed_line_far_into_a_big_file_names_the_real_line(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    good = json.dumps({"text": "x" * 200, "label": 1}) + "\n"
    n = 60_000  # ~13 MB: past datasets' first JSON block, whose row numbers restart
    path.write_text(good * n + '{"text": "broken", "label": \n' + good)
    with pytest.raises(UserError) as err:
        load_splits(data_cfg(path))
    assert f"line {n + 1}" in err.value.one_line()


def test_fractional_labels_are_refused_in_csv_as_in_jsonl(tmp_path: Path) -> None:
    for name, body in (
        ("f.csv", "text,label\na,0.5\nb,1.7\nc,0.5\n"),
        ("f.jsonl", '{"text":"a","label":0.5}\n{"text":"b","label":1.7}\n'),
    ):
        path = tmp_path / name
        path.write_text(body)
        with pytest.raises(UserError) as err:
            load_splits(data_cfg(path))
        assert "0.5" in err.value.one_line() and "not a class name" in err.value.one_line()


def test_fifo_is_refused_not_read_as_empty(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(UserError) as err:
        load_splits(data_cfg(fifo))
    assert "not a regular file" in err.value.one_line()


def test_plain_text_lines_load_as_a_text_column(tmp_path: Path) -> None:
    path = tmp_path / "lines.txt"
    path.write_text("first line\n\nsecond line\n")
    source = open_source(str(path))
    assert source.columns == ["text"] and len(source.splits["train"]) == 2


def test_arrow_cache_lives_in_the_runs_root(tmp_path: Path, runs_root: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\n" + "".join(f"text {i},{i % 2}\n" for i in range(20)))
    load_splits(data_cfg(path))
    assert list((runs_root / ".cache" / "datasets").rglob("*.arrow"))


def test_big_data_stays_in_arrow_and_tokenizes_lazily(tmp_path: Path, monkeypatch) -> None:
    from engine.tasks.classification import columns
    from engine.tasks.classification.columns import ArrowTexts
    from engine.tasks.classification.encoding import LazyEncoded, encode_cached

    monkeypatch.setattr(columns, "LAZY_ROWS", 10)
    path = tmp_path / "d.csv"
    path.write_text("text,label\n" + "".join(f"text number {i},{i % 2}\n" for i in range(40)))
    splits = load_splits(data_cfg(path))
    assert isinstance(splits.train_texts, ArrowTexts)
    assert len(splits.train_texts) + len(splits.eval_texts) == 40
    assert list(splits.eval_labels).count(0) == list(splits.eval_labels).count(1) == 2
    seen = {splits.train_texts[i] for i in range(len(splits.train_texts))}
    assert not seen & {splits.eval_texts[i] for i in range(len(splits.eval_texts))}

    calls = []

    def tokenizer(text, truncation, max_length):
        calls.append(text)
        return {"input_ids": [1] * len(text.split())}

    data, hit = encode_cached(
        tmp_path, "train", tokenizer, "tok", splits.train_texts, splits.train_labels, 16
    )
    assert isinstance(data, LazyEncoded) and not hit and not calls
    item = data[0]
    assert item["input_ids"] == [1, 1, 1] and len(calls) == 1
    assert len(data.lengths()) == len(data)
