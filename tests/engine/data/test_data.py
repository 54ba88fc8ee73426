"""Data loading: every format, column detection, label mapping, splits and the error messages."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import pytest

from engine.config import DataConfig
from engine.core.errors import UserError
from engine.data.readers import EXAMPLE_DATA, read_table
from engine.tasks.classification.data import load_splits, stratified_split

ROWS = [
    {"text": "a wonderful film", "label": "pos"},
    {"text": "dull and far too long", "label": "neg"},
    {"text": "I loved every minute", "label": "pos"},
    {"text": "the plot makes no sense", "label": "neg"},
    {"text": "great acting, great music", "label": "pos"},
    {"text": "I want my money back", "label": "neg"},
]


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def csv_text(rows: list[list], delimiter: str = ",") -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return out.getvalue()


def load(path: Path, seed: int = 42, **settings) -> object:
    return load_splits(DataConfig(data_file_path=str(path), **settings), seed=seed)


def error_of(path: Path, **settings) -> UserError:
    """The UserError of loading `path`; `.text` is its one line with the tmp folder as DIR
    (so words in the test's folder name cannot satisfy an assertion)."""
    with pytest.raises(UserError) as info:
        load(path, **settings)
    err = info.value
    assert "\n" not in err.one_line()
    err.text = err.one_line().replace(str(path.parent), "DIR")
    return err


def labelled(n: int, labels: list) -> list[dict]:
    """n rows cycling through the labels, each text distinct."""
    return [{"text": f"example number {i}", "label": labels[i % len(labels)]} for i in range(n)]


# -- formats ----------------------------------------------------------------------------------------
def test_bundled_example_is_the_default():
    splits = load_splits(DataConfig(), seed=42)
    assert EXAMPLE_DATA.is_file()
    assert splits.format == "jsonl"
    assert set(splits.id2label.values()) == {"negative", "positive"}
    assert splits.eval_source == "held out"
    assert len(splits.train_texts) + len(splits.eval_texts) == 320


def test_seed_format_json_list(tmp_path):
    path = write(tmp_path / "data.json", json.dumps(ROWS))
    splits = load(path, validation_fraction=0.0)
    assert splits.format == "json"
    assert splits.train_texts == [r["text"] for r in ROWS]
    assert splits.id2label == {0: "neg", 1: "pos"}
    assert splits.train_labels == [1, 0, 1, 0, 1, 0]
    assert (splits.text_column, splits.label_column) == ("text", "label")
    assert splits.eval_source == "none"


def test_json_object_of_splits_uses_its_validation_split(tmp_path):
    data = {"train": ROWS, "validation": ROWS[:2], "test": ROWS[2:4]}
    splits = load(write(tmp_path / "data.json", json.dumps(data)))
    assert splits.eval_source == "file split"
    assert splits.train_texts == [r["text"] for r in ROWS]  # nothing held out of train
    assert splits.eval_texts == [ROWS[0]["text"], ROWS[1]["text"]]
    assert [splits.id2label[i] for i in splits.eval_labels] == ["pos", "neg"]


@pytest.mark.parametrize("name", ["dev", "valid", "val", "eval", "Validation"])
def test_json_split_names(tmp_path, name):
    data = {"Train": ROWS, name: ROWS[:2]}
    splits = load(write(tmp_path / "data.json", json.dumps(data)))
    assert splits.eval_source == "file split"
    assert len(splits.eval_texts) == 2


def test_json_object_without_validation_holds_out(tmp_path):
    data = {"train": labelled(20, ["a", "b"]), "test": labelled(4, ["a", "b"])}
    splits = load(write(tmp_path / "data.json", json.dumps(data)), validation_fraction=0.2)
    assert splits.eval_source == "held out"
    assert len(splits.train_texts) == 16 and len(splits.eval_texts) == 4


def test_jsonl(tmp_path):
    splits = load(write(tmp_path / "data.jsonl", jsonl(ROWS) + "\n\n"), validation_fraction=0)
    assert splits.format == "jsonl"
    assert len(splits.train_texts) == 6


def test_json_lines_saved_as_json(tmp_path):
    splits = load(write(tmp_path / "data.json", jsonl(ROWS)), validation_fraction=0)
    assert len(splits.train_texts) == 6


def test_utf8_bom_is_accepted(tmp_path):
    path = write(tmp_path / "data.jsonl", ("\ufeff" + jsonl(ROWS)).encode("utf-8"))
    assert len(load(path, validation_fraction=0).train_texts) == 6


def test_csv_with_header_and_quoting(tmp_path):
    text = 'text,label\n"hello, world",1\n"she said ""no""",0\n"two\nlines",1\nplain,0\n'
    splits = load(write(tmp_path / "data.csv", text), validation_fraction=0)
    assert splits.format == "csv"
    assert splits.train_texts == ["hello, world", 'she said "no"', "two\nlines", "plain"]
    assert splits.id2label == {0: "0", 1: "1"}  # digit strings in CSV are int labels
    assert splits.train_labels == [1, 0, 1, 0]


def test_tsv_with_header_sst2_style(tmp_path):
    text = 'sentence\tlabel\nit \'s a charming journey . \t1\nunfunny and "lame" \t0\n'
    splits = load(write(tmp_path / "train.tsv", text), validation_fraction=0)
    assert splits.format == "tsv"
    assert splits.text_column == "sentence"
    assert splits.train_texts[1] == 'unfunny and "lame" '  # quotes are literal in TSV


def test_tsv_without_header(tmp_path):
    text = "".join(f"{r['text']}\t{r['label']}\n" for r in ROWS)
    splits = load(write(tmp_path / "data.tsv", text), validation_fraction=0)
    assert splits.train_texts[0] == ROWS[0]["text"]  # the first row is data, not a header
    assert len(splits.train_texts) == 6
    assert splits.id2label == {0: "neg", 1: "pos"}


def test_csv_without_header_label_first_and_int_labels(tmp_path):
    text = csv_text([[i % 2, r["text"]] for i, r in enumerate(ROWS)])
    splits = load(write(tmp_path / "data.csv", text), validation_fraction=0)
    assert len(splits.train_texts) == 6
    assert splits.train_texts[0] == ROWS[0]["text"]
    assert splits.train_labels == [0, 1, 0, 1, 0, 1]


def test_csv_header_with_uncommon_names_is_not_a_data_row(tmp_path):
    text = csv_text([["words", "verdict"]] + [[r["text"], r["label"]] for r in ROWS])
    path = write(tmp_path / "data.csv", text)
    err = error_of(path)  # no common names: say which columns exist
    assert "words, verdict" in err.text
    splits = load(path, text_column="words", label_column="verdict", validation_fraction=0)
    assert splits.id2label == {0: "neg", 1: "pos"}  # "verdict" did not become a class
    assert len(splits.train_texts) == 6


def test_short_csv_whose_header_only_the_user_names(tmp_path):
    path = write(tmp_path / "data.csv", "a,b\nhello there,pos\nbad,neg\n")
    splits = load(path, text_column="a", label_column="b")
    assert splits.train_texts == ["hello there", "bad"]


def test_csv_float_written_int_labels(tmp_path):
    # pandas writes an int column with gaps as 1.0 / 0.0
    path = write(tmp_path / "data.csv", "text,label\ngood,1.0\nbad,0.0\nfine,1.0\n")
    splits = load(path, validation_fraction=0)
    assert splits.id2label == {0: "0", 1: "1"}


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "data.parquet"
    table = pa.table(
        {
            "review": [r["text"] for r in ROWS],
            "stars": [5 if r["label"] == "pos" else 1 for r in ROWS],
        }
    )
    pq.write_table(table, path)
    splits = load(path, label_column="stars", validation_fraction=0)
    assert splits.format == "parquet"
    assert splits.text_column == "review"
    assert splits.id2label == {0: "1", 1: "5"}
    assert splits.train_labels == [1, 0, 1, 0, 1, 0]


def test_parquet_null_text_names_the_row(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"text": ["good", None, "bad"], "label": ["p", "n", "n"]}), path)
    err = error_of(path)
    assert "empty text" in err.text
    assert "row 2" in err.text


def test_read_table_exposes_columns_and_rows(tmp_path):
    table = read_table(write(tmp_path / "data.jsonl", jsonl(ROWS)))
    assert table.columns == ["text", "label"]
    assert len(table.rows) == 6
    assert table.train_split == "train" and table.eval_split is None


# -- columns ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text_name", "label_name"),
    [
        ("sentence", "label"),
        ("review", "sentiment"),
        ("Content", "Category"),
        ("utterance", "intent"),
        ("question", "target"),
    ],
)
def test_columns_detected_from_common_names(tmp_path, text_name, label_name):
    rows = [{"id": i, text_name: r["text"], label_name: r["label"]} for i, r in enumerate(ROWS)]
    splits = load(write(tmp_path / "data.jsonl", jsonl(rows)), validation_fraction=0)
    assert (splits.text_column, splits.label_column) == (text_name, label_name)
    assert splits.train_texts[0] == ROWS[0]["text"]


def test_columns_can_be_overridden(tmp_path):
    rows = [
        {"text": "ignore me", "title": r["text"], "label": 0, "topic": r["label"]} for r in ROWS
    ]
    splits = load(
        write(tmp_path / "data.jsonl", jsonl(rows)),
        text_column="title",
        label_column="topic",
        validation_fraction=0,
    )
    assert splits.train_texts[0] == ROWS[0]["text"]
    assert splits.id2label == {0: "neg", 1: "pos"}


def test_missing_named_column_lists_the_columns(tmp_path):
    path = write(tmp_path / "data.csv", "text,label,source\nhi,1,a\nho,0,b\n")
    err = error_of(path, label_column="sentiment")
    line = err.text
    assert "sentiment" in line
    assert "text, label, source" in line
    assert err.field == "data.label_column"


def test_undetectable_columns_list_the_columns(tmp_path):
    rows = [{"body_text": r["text"], "verdict": r["label"]} for r in ROWS]
    err = error_of(write(tmp_path / "data.jsonl", jsonl(rows)))
    assert "body_text, verdict" in err.text
    assert "text_column" in err.text  # says which setting to use
    assert err.field == "data.text_column"


def test_same_column_for_text_and_label(tmp_path):
    err = error_of(write(tmp_path / "data.jsonl", jsonl(ROWS)), text_column="label")
    assert "same column" in err.text


def test_headerless_file_says_its_names_are_guesses(tmp_path):
    text = "".join(f"{r['text']}\t{r['label']}\n" for r in ROWS)
    err = error_of(write(tmp_path / "data.tsv", text), text_column="sentence")
    assert "no header" in err.text


def test_row_missing_the_label_names_the_line_and_its_keys(tmp_path):
    rows = ROWS[:3] + [{"text": "no label here", "labl": "pos"}]
    err = error_of(write(tmp_path / "data.jsonl", jsonl(rows)))
    assert "line 4" in err.text
    assert "'label'" in err.text
    assert "text, labl" in err.text


# -- labels -----------------------------------------------------------------------------------------
def test_int_labels_keep_their_numeric_order(tmp_path):
    rows = [{"text": f"t{i}", "label": y} for i, y in enumerate([10, 2, 2, 10, 1, 1])]
    splits = load(write(tmp_path / "data.jsonl", jsonl(rows)), validation_fraction=0)
    assert splits.id2label == {0: "1", 1: "2", 2: "10"}
    assert splits.train_labels == [2, 1, 1, 2, 0, 0]


def test_string_labels_are_sorted_and_stripped(tmp_path):
    rows = [{"text": f"t{i}", "label": y} for i, y in enumerate(["b", " a", "c", "a "])]
    splits = load(write(tmp_path / "data.jsonl", jsonl(rows)), validation_fraction=0)
    assert splits.id2label == {0: "a", 1: "b", 2: "c"}
    assert splits.train_labels == [1, 0, 2, 0]
    assert splits.label_counts == {"a": 2, "b": 1, "c": 1}


def test_float_integral_labels_in_json_are_ints(tmp_path):
    rows = [{"text": "x", "label": 1.0}, {"text": "y", "label": 0}]
    splits = load(write(tmp_path / "data.json", json.dumps(rows)), validation_fraction=0)
    assert splits.id2label == {0: "0", 1: "1"}


def test_fractional_label_is_refused(tmp_path):
    rows = [{"text": "x", "label": 1}, {"text": "y", "label": 0.5}]
    err = error_of(write(tmp_path / "data.jsonl", jsonl(rows)))
    assert "0.5" in err.text
    assert "line 2" in err.text


def test_labels_that_mix_types_name_where(tmp_path):
    rows = [{"text": "x", "label": 1}, {"text": "y", "label": 0}, {"text": "z", "label": "pos"}]
    err = error_of(write(tmp_path / "data.jsonl", jsonl(rows)))
    line = err.text
    assert "mix types" in line
    assert "int at data.jsonl line 1" in line
    assert "str at data.jsonl line 3" in line
    assert err.field == "data.label_column"


def test_labels_that_mix_types_in_a_json_list_name_the_record(tmp_path):
    rows = [{"text": "x", "label": "pos"}, {"text": "y", "label": 3}]
    err = error_of(write(tmp_path / "data.json", json.dumps(rows)))
    assert "record 2" in err.text


def test_single_class_is_refused(tmp_path):
    rows = [{"text": f"t{i}", "label": "pos"} for i in range(5)]
    err = error_of(write(tmp_path / "data.jsonl", jsonl(rows)))
    assert "only one class" in err.text
    assert "'pos'" in err.text
    assert "two labels" in err.text


def test_missing_label_value(tmp_path):
    rows = [{"text": "x", "label": 1}, {"text": "y", "label": None}]
    err = error_of(write(tmp_path / "data.jsonl", jsonl(rows)))
    assert "missing label" in err.text and "line 2" in err.text


# -- empty texts and line numbers ---------------------------------------------------------------------
def test_empty_text_in_jsonl_names_the_line(tmp_path):
    rows = ROWS[:4] + [{"text": "   ", "label": "pos"}]
    err = error_of(write(tmp_path / "data.jsonl", jsonl(rows)))
    assert "empty text" in err.text
    assert "data.jsonl line 5" in err.text
    assert err.field == "data.text_column"


def test_empty_text_in_json_names_the_record(tmp_path):
    rows = ROWS[:2] + [{"text": "", "label": "pos"}]
    err = error_of(write(tmp_path / "data.json", json.dumps(rows)))
    assert "record 3" in err.text


def test_empty_text_in_a_named_split(tmp_path):
    data = {"train": ROWS, "validation": [{"text": "", "label": "pos"}]}
    err = error_of(write(tmp_path / "data.json", json.dumps(data)))
    assert "[validation] record 1" in err.text


def test_csv_line_numbers_count_blank_lines_and_quoted_newlines(tmp_path):
    text = 'text,label\n\n"first\nsecond",1\n\nok,0\n,1\n'
    err = error_of(write(tmp_path / "data.csv", text))
    assert "empty text" in err.text
    assert "line 7" in err.text  # the physical line of the bad row


def test_csv_ragged_row_names_the_line(tmp_path):
    err = error_of(write(tmp_path / "data.csv", "text,label\nok,1\n\nbad,0,extra\n"))
    assert "line 4" in err.text
    assert "expected 2 fields, found 3" in err.text


# -- broken files -----------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    err = error_of(tmp_path / "nope.jsonl")
    assert "not found" in err.text
    assert "nope.jsonl" in err.text
    assert err.field == "data.data_file_path"


def test_folder_instead_of_file(tmp_path):
    assert "folder" in error_of(tmp_path).message


@pytest.mark.parametrize("content", ["", "  \n\n ", "\ufeff\n"])
@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv", ".tsv"])
def test_empty_file(tmp_path, content, suffix):
    err = error_of(write(tmp_path / f"data{suffix}", content))
    assert "empty" in err.text


@pytest.mark.parametrize(
    ("name", "content"),
    [("data.json", "[]"), ("data.json", '{"train": []}'), ("data.csv", "text,label\n")],
)
def test_file_without_rows(tmp_path, name, content):
    assert "no rows" in error_of(write(tmp_path / name, content)).text


def test_unparsable_json_names_line_and_column(tmp_path):
    path = write(tmp_path / "data.json", '[{"text": "a", "label": 1},\n {"text": "b" "label": 0}]')
    err = error_of(path)
    assert "not valid JSON" in err.text
    assert "line 2" in err.text
    assert "column" in err.text


def test_unparsable_jsonl_names_the_line(tmp_path):
    path = write(tmp_path / "data.jsonl", jsonl(ROWS[:2]) + '{"text": "cut off", "lab\n')
    err = error_of(path)
    assert "not valid JSON" in err.text
    assert "line 3" in err.text
    assert "one JSON object" in err.text


def test_jsonl_line_that_is_not_an_object(tmp_path):
    err = error_of(write(tmp_path / "data.jsonl", jsonl(ROWS[:1]) + "[1, 2]\n"))
    assert "line 2" in err.text and "list" in err.text


def test_json_list_of_non_objects(tmp_path):
    err = error_of(write(tmp_path / "data.json", '[{"text": "a", "label": 1}, "b"]'))
    assert "record 2" in err.text


def test_json_scalar(tmp_path):
    assert "list of records" in error_of(write(tmp_path / "data.json", '"hello"')).text


def test_broken_parquet(tmp_path):
    err = error_of(write(tmp_path / "data.parquet", b"this is not parquet at all"))
    assert "Parquet" in err.text


def test_not_utf8(tmp_path):
    err = error_of(write(tmp_path / "data.csv", "text,label\ncaf\xe9,1\n".encode("latin-1")))
    assert "UTF-8" in err.text


def test_unknown_extension(tmp_path):
    err = error_of(write(tmp_path / "data.xml", "<a>hello</a>"))
    assert ".xml" in err.text and ".jsonl" in err.text and ".txt" in err.text


def test_plain_text_lines_have_a_text_column_but_no_labels(tmp_path):
    err = error_of(write(tmp_path / "data.txt", "hello\n\nworld\n"))
    assert "label column" in err.text and "columns are: text" in err.text


# -- splits -------------------------------------------------------------------------------------------
def test_stratified_seeded_hold_out(tmp_path):
    rows = labelled(60, ["a"]) + labelled(30, ["b"]) + labelled(10, ["c"])
    for i, r in enumerate(rows):
        r["text"] = f"row {i}"
    path = write(tmp_path / "data.jsonl", jsonl(rows))
    splits = load(path, seed=1, validation_fraction=0.2)
    assert splits.eval_source == "held out"
    names = splits.id2label
    assert Counter(names[y] for y in splits.eval_labels) == {"a": 12, "b": 6, "c": 2}
    assert Counter(names[y] for y in splits.train_labels) == {"a": 48, "b": 24, "c": 8}
    # Nothing lost or duplicated.
    assert sorted(splits.train_texts + splits.eval_texts) == sorted(r["text"] for r in rows)
    assert not set(splits.train_texts) & set(splits.eval_texts)

    again = load(path, seed=1, validation_fraction=0.2)
    assert again.eval_texts == splits.eval_texts and again.train_texts == splits.train_texts
    other = load(path, seed=2, validation_fraction=0.2)
    assert set(other.eval_texts) != set(splits.eval_texts)
    assert Counter(names[y] for y in other.eval_labels) == {"a": 12, "b": 6, "c": 2}


def test_every_class_keeps_a_training_example():
    labels = [0] * 20 + [1, 1] + [2]
    train, held = stratified_split(labels, 0.1, seed=0)
    assert {labels[i] for i in train} == {0, 1, 2}
    assert sorted(train + held) == list(range(len(labels)))


def test_validation_fraction_zero_keeps_everything(tmp_path):
    splits = load(
        write(tmp_path / "data.jsonl", jsonl(labelled(20, ["a", "b"]))), validation_fraction=0.0
    )
    assert len(splits.train_texts) == 20 and splits.eval_texts == []
    assert splits.eval_source == "none"


def test_separate_eval_file(tmp_path):
    train = write(tmp_path / "train.jsonl", jsonl(labelled(20, ["pos", "neg"])))
    rows = [{"sentence": "a new one", "label": "neg"}, {"sentence": "another", "label": "pos"}]
    evalf = write(
        tmp_path / "dev.csv",
        "sentence,label\n" + "".join(f"{r['sentence']},{r['label']}\n" for r in rows),
    )
    splits = load(train, eval_file_path=str(evalf))
    assert splits.eval_source == "eval file"
    assert len(splits.train_texts) == 20  # nothing held out of training
    assert splits.eval_texts == ["a new one", "another"]
    assert [splits.id2label[i] for i in splits.eval_labels] == ["neg", "pos"]


def test_eval_file_with_int_labels_from_csv(tmp_path):
    train = write(tmp_path / "train.jsonl", jsonl(labelled(10, [0, 1])))
    evalf = write(tmp_path / "dev.tsv", "text\tlabel\nfoo\t1\nbar\t0\n")
    splits = load(train, eval_file_path=str(evalf))
    assert splits.eval_labels == [1, 0]


def test_eval_labels_unseen_in_training(tmp_path):
    train = write(tmp_path / "train.jsonl", jsonl(labelled(10, ["pos", "neg"])))
    evalf = write(
        tmp_path / "dev.jsonl",
        jsonl([{"text": "x", "label": "neutral"}, {"text": "y", "label": "pos"}]),
    )
    err = error_of(train, eval_file_path=str(evalf))
    assert "neutral" in err.text
    assert "not in the training data" in err.text
    assert "dev.jsonl" in err.text
    assert err.field == "data.eval_file_path"


def test_eval_labels_of_another_type(tmp_path):
    train = write(tmp_path / "train.jsonl", jsonl(labelled(10, ["pos", "neg"])))
    evalf = write(tmp_path / "dev.jsonl", jsonl([{"text": "x", "label": 1}]))
    err = error_of(train, eval_file_path=str(evalf))
    assert "type" in err.text
    assert err.field == "data.eval_file_path"


def test_missing_eval_file(tmp_path):
    train = write(tmp_path / "train.jsonl", jsonl(labelled(10, ["pos", "neg"])))
    err = error_of(train, eval_file_path=str(tmp_path / "dev.jsonl"))
    assert "dev.jsonl" in err.text and "not found" in err.text
    assert err.field == "data.eval_file_path"


def test_unseen_labels_in_the_files_own_validation_split(tmp_path):
    data = {"train": ROWS, "validation": [{"text": "meh", "label": "mixed"}]}
    err = error_of(write(tmp_path / "data.json", json.dumps(data)))
    assert "mixed" in err.text


def test_max_train_rows_takes_the_first_rows(tmp_path):
    rows = labelled(40, ["a", "b"])
    splits = load(
        write(tmp_path / "data.jsonl", jsonl(rows)), max_train_rows=10, validation_fraction=0.0
    )
    assert splits.train_texts == [r["text"] for r in rows[:10]]


def test_max_train_rows_before_the_hold_out(tmp_path):
    splits = load(
        write(tmp_path / "data.jsonl", jsonl(labelled(40, ["a", "b"]))),
        max_train_rows=20,
        validation_fraction=0.5,
    )
    assert len(splits.train_texts) == 10 and len(splits.eval_texts) == 10


def test_max_eval_rows(tmp_path):
    data = {"train": labelled(10, ["a", "b"]), "validation": labelled(8, ["a", "b"])}
    splits = load(write(tmp_path / "data.json", json.dumps(data)), max_eval_rows=3)
    assert len(splits.eval_texts) == 3 == len(splits.eval_labels)


def test_max_train_rows_leaving_one_class(tmp_path):
    rows = labelled(5, ["a"]) + labelled(5, ["b"])
    err = error_of(write(tmp_path / "data.jsonl", jsonl(rows)), max_train_rows=3)
    assert "only one class" in err.text
