"""Metrics by hand, predictions from the adapter and the merged model, plain loading, CLI."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.core.errors import UserError
from engine.data.readers import EXAMPLE_DATA
from engine.tasks.classification.metrics import classification_metrics
from tests.fakeruns import cli, engine_env, train_tiny, varied_tiny_bert

pytestmark = pytest.mark.slow

TEXTS = [json.loads(line)["text"] for line in EXAMPLE_DATA.read_text().splitlines()[:6]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(runs root, run dir) of a tiny run trained for a few steps."""
    base = tmp_path_factory.mktemp("predict")
    model = varied_tiny_bert(base / "tiny")
    root = base / "runs"
    run_dir = train_tiny(root, model, "--max_steps", "12", "--logging_steps", "4")
    return root, run_dir


@pytest.fixture(scope="module")
def merged(trained: tuple[Path, Path]) -> Path:
    """The run's adapter merged into its base model."""
    from engine.tasks.export import export_merged

    _, run_dir = trained
    return export_merged(run_dir / "adapter", run_dir.parent.parent / "merged")


def test_metrics_match_a_hand_computation() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2, 2])
    preds = np.array([0, 1, 1, 1, 2, 0, 2])
    m = classification_metrics(labels, preds, {0: "a", 1: "b", 2: "c"})
    assert m["accuracy"] == pytest.approx(5 / 7)
    # a: predicted twice, right once; b: predicted 3 times, right twice; c: 2 of 2 right.
    expected = {
        "a": (1 / 2, 1 / 2, 1 / 2, 2),
        "b": (2 / 3, 1.0, 0.8, 2),
        "c": (1.0, 2 / 3, 0.8, 3),
    }
    for name, (p, r, f1, support) in expected.items():
        got = m["per_class"][name]
        assert got["precision"] == pytest.approx(p)
        assert got["recall"] == pytest.approx(r)
        assert got["f1"] == pytest.approx(f1)
        assert got["support"] == support
    assert m["f1"] == pytest.approx((0.5 + 0.8 + 0.8) / 3)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert m["labels"] == ["a", "b", "c"]


def test_adapter_and_merged_predictions_agree(trained: tuple[Path, Path], merged: Path) -> None:
    from engine.rundir.weights import find_weights
    from engine.tasks.classification.predict import Predictor

    _, run_dir = trained
    assert find_weights(run_dir) == run_dir / "adapter"
    adapter = Predictor(run_dir / "adapter")
    full = Predictor(merged)
    a, b = adapter.logits(TEXTS), full.logits(TEXTS)
    assert len({tuple(round(x, 5) for x in row) for row in a.tolist()}) > 1, "logits vary by text"
    assert np.allclose(a.numpy(), b.numpy(), atol=1e-4)
    pa, pb = adapter.predict(TEXTS), full.predict(TEXTS)
    assert [p.label for p in pa] == [p.label for p in pb]
    assert set(pa[0].probabilities) == {"negative", "positive"}
    assert sum(pa[0].probabilities.values()) == pytest.approx(1.0, abs=1e-4)


PLAIN_LOAD = """
import json, sys, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from peft import AutoPeftModelForSequenceClassification
adapter, merged, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
tok = AutoTokenizer.from_pretrained(adapter)
batch = tok(texts, padding=True, truncation=True, return_tensors="pt")
out = {}
with torch.no_grad():
    m = AutoPeftModelForSequenceClassification.from_pretrained(adapter).eval()
    out["adapter"] = m(**batch).logits.tolist()
    full = AutoModelForSequenceClassification.from_pretrained(merged).eval()
    out["merged"] = full(**batch).logits.tolist()
    out["labels"] = {int(k): v for k, v in full.config.id2label.items()}
print(json.dumps(out))
"""


def test_exports_load_with_plain_peft_and_transformers(
    trained: tuple[Path, Path], merged: Path, tmp_path: Path
) -> None:
    from engine.tasks.classification.predict import Predictor
    from engine.tasks.export import copy_adapter

    root, run_dir = trained
    adapter = copy_adapter(run_dir / "adapter", tmp_path / "adapter-copy")
    done = subprocess.run(
        [sys.executable, "-c", PLAIN_LOAD, str(adapter), str(merged), json.dumps(TEXTS)],
        capture_output=True, text=True, env=engine_env(root), cwd=str(tmp_path), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    ours = Predictor(run_dir / "adapter").logits(TEXTS).numpy()
    assert np.allclose(np.array(out["adapter"]), ours, atol=1e-4)
    assert np.allclose(np.array(out["merged"]), ours, atol=1e-4)
    assert out["labels"] == {"0": "negative", "1": "positive"}


def test_copy_of_a_checkpoint_drops_the_optimizer_and_keeps_labels(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    from engine.tasks.export import copy_adapter

    _, run_dir = trained
    (checkpoint,) = (run_dir / "checkpoints").glob("checkpoint-*")
    assert (checkpoint / "optimizer.pt").is_file()
    out = copy_adapter(checkpoint, tmp_path / "from-checkpoint")
    assert (out / "adapter_model.safetensors").is_file()
    assert not (out / "optimizer.pt").exists()
    assert json.loads((out / "labels.json").read_text())["id2label"] == {
        "0": "negative",
        "1": "positive",
    }


def test_cli_predict_texts_and_file(trained: tuple[Path, Path], tmp_path: Path) -> None:
    from engine.tasks.classification.predict import Predictor

    root, run_dir = trained
    expected = Predictor(run_dir / "adapter").predict(TEXTS)
    done = cli(root, "predict", run_dir.name, TEXTS[0])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == expected[0].label
    assert TEXTS[0] in done.stdout

    src = tmp_path / "x.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    out = tmp_path / "y.csv"
    done = cli(root, "predict", run_dir.name, "--file", str(src), "--out", str(out))
    assert done.returncode == 0, done.stderr
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["text"] for r in rows] == TEXTS
    assert [r["label"] for r in rows] == [p.label for p in expected]
    for row, pred in zip(rows, expected, strict=True):
        assert float(row["p_positive"]) == pytest.approx(pred.probabilities["positive"], abs=1e-5)


def test_cli_export_writes_both(trained: tuple[Path, Path], tmp_path: Path) -> None:
    root, run_dir = trained
    done = cli(root, "export", run_dir.name, "--adapter", str(tmp_path / "a"),
               "--merged", str(tmp_path / "m"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "a" / "adapter_config.json").is_file()
    assert (tmp_path / "m" / "model.safetensors").is_file()
    # Readable by other accounts (an Ollama service) as the umask allows, not safetensors' 0600.
    mask = os.umask(0o022)
    os.umask(mask)
    for path in (
        tmp_path / "a" / "adapter_model.safetensors",
        tmp_path / "m" / "model.safetensors",
    ):
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path


@pytest.mark.parametrize("case", ["file-as-merged", "file-as-adapter", "no-run", "nothing"])
def test_cli_export_errors_exit_2_with_one_line(
    trained: tuple[Path, Path], tmp_path: Path, case: str
) -> None:
    root, run_dir = trained
    a_file = tmp_path / "taken.txt"
    a_file.write_text("not a folder")
    args = {
        "file-as-merged": [run_dir.name, "--merged", str(a_file)],
        "file-as-adapter": [run_dir.name, "--adapter", str(a_file)],
        "no-run": ["no-such-run", "--merged", str(tmp_path / "m")],
        "nothing": [run_dir.name],
    }[case]
    done = cli(root, "export", *args)
    assert done.returncode == 2
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr


def test_export_refuses_a_run_without_weights(tmp_path: Path) -> None:
    from engine.config import RunConfig
    from engine.rundir.weights import find_weights

    run_dir = tmp_path / "20270101-000000-empty"
    run_dir.mkdir()
    RunConfig().save(run_dir / "config.toml")
    with pytest.raises(UserError, match="no adapter or checkpoint yet"):
        find_weights(run_dir)


def test_adapter_card_tells_peft_the_label_count() -> None:
    from engine.config import RunConfig
    from engine.tasks.classification.card import model_card

    card = model_card(RunConfig(), "base", {0: "a", 1: "b", 2: "c"}, {"accuracy": 0.5})
    assert "num_labels=len(id2label)" in card
    assert "{0: 'a', 1: 'b', 2: 'c'}" in card
