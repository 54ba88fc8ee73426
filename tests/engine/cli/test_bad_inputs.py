"""Bad input, case by case: exit code 2, one line on stderr, no traceback, no user file changed.

Runs the headless CLI in-process (engine.cli.main). Every case hashes the whole test folder
(the user's data, models, output folders and the runs root) before and after.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from engine.cli.commands import main
from engine.rundir.outputs import write_marker
from tests.fakeruns import make_fake_run

BAD_TOML = "[training]\nlearning_rate = = 3\n"


def tree_hash(*folders: Path) -> dict[str, str]:
    """Every file and folder under `folders` with a hash of its content."""
    out: dict[str, str] = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            key = str(p)
            out[key] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def world(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A user's folder: data files, configs, model folders, an output folder, runs."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t = tmp_path
    (t / "bad.toml").write_text(BAD_TOML)
    (t / "unknown.toml").write_text("[lora]\nrank = 4\n")
    (t / "empty.toml").write_text("")
    (t / "blank.toml").write_text("  \n\n")
    (t / "latin1.toml").write_bytes("[output]\nrun_name = 'caf\xe9'\n".encode("latin-1"))
    (t / "empty.csv").write_text("")
    (t / "broken.jsonl").write_text('{"text": "ok", "label": 1}\n{"text": \n')
    (t / "one.jsonl").write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 1}\n')
    (t / "good.jsonl").write_text(
        "".join(json.dumps({"text": f"t{i}", "label": i % 2}) + "\n" for i in range(20))
    )
    (t / "a file").write_text("not a folder")
    mine = t / "my project"
    mine.mkdir()
    (mine / "README.md").write_text("# my notes\n")
    (mine / "config.json").write_text('{"mine": true}\n')
    (t / "existing.jsonl").write_text('{"keep": 1}\n')
    # A model with only pickle weights (never loaded: refused first).
    pickled = t / "pickled-model"
    pickled.mkdir()
    shutil.copy(tiny_model / "config.json", pickled / "config.json")
    (pickled / "pytorch_model.bin").write_bytes(b"not really a pickle")
    # An adapter saved with .bin weights.
    bin_adapter = t / "bin-adapter"
    bin_adapter.mkdir()
    (bin_adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(tiny_model)})
    )
    (bin_adapter / "adapter_model.bin").write_bytes(b"not really a pickle")
    # Runs: a finished one with its adapter, one whose config.toml a full disk emptied.
    root = t / "runs"
    done = make_fake_run(root, "done", "finished")
    adapter = done / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(tiny_model)})
    )
    write_marker(adapter, done)
    emptied = make_fake_run(root, "emptied", "stopped")
    (emptied / "config.toml").write_text("")
    old = make_fake_run(root, "old", "failed")
    (old / "notes.txt").write_text("kept")
    return {
        "tmp": t,
        "root": root,
        "tiny": tiny_model,
        "done": done,
        "old": old,
        "adapter": adapter,
    }


def fill(arg: str, w: dict[str, Path]) -> str:
    """Put the world's paths into an argument template."""
    return (
        arg.replace("{tmp}", str(w["tmp"]))
        .replace("{tiny}", str(w["tiny"]))
        .replace("{done}", w["done"].name)
        .replace("{done_path}", str(w["done"]))
        .replace("{old}", str(w["old"]))
        .replace("{adapter}", str(w["adapter"]))
    )


TRAIN = [
    ("missing data file", ["--data_file_path", "{tmp}/nope.jsonl"], ["nope.jsonl", "not found"]),
    ("bad text column", ["--text_column", "review_body"], ["review_body"]),
    ("bad label column", ["--label-column", "stars"], ["stars"]),
    ("learning rate text", ["--learning_rate", "fast"], ["learning_rate", "'fast'"]),
    ("learning rate out of range", ["--learning-rate", "3"], ["between 0 and 1"]),
    ("fp16", ["--precision", "fp16"], ["fp16"]),
    ("unknown precision", ["--precision", "fp8"], ["precision"]),
    ("lora rank 0", ["--lora_r", "0"], ["lora_r"]),
    ("lora alpha 0", ["--lora_alpha", "0"], ["lora_alpha"]),
    ("lora dropout 1", ["--lora_dropout", "1.0"], ["lora_dropout"]),
    ("empty target modules", ["--target_modules", " "], ["target_modules"]),
    ("infinite epochs", ["--epochs", "inf"], ["finite"]),
    ("negative max steps", ["--max_steps", "-1"], ["max_steps"]),
    ("negative batch size", ["--batch_size", "-2"], ["batch_size"]),
    ("grad accum 0", ["--grad_accum", "0"], ["grad_accum"]),
    ("negative weight decay", ["--weight_decay", "-1"], ["weight_decay"]),
    ("warmup ratio 1.5", ["--warmup_ratio", "1.5"], ["warmup_ratio"]),
    ("unknown scheduler", ["--lr_scheduler", "zigzag"], ["lr_scheduler"]),
    ("unknown metric", ["--metric_for_best", "bleu"], ["metric_for_best"]),
    ("negative threads", ["--threads", "-1"], ["threads"]),
    ("validation share 0.95", ["--validation_fraction", "0.95"], ["validation_fraction"]),
    ("eval steps missing", ["--eval_strategy", "steps"], ["eval_steps"]),
    ("keep zero checkpoints", ["--save_total_limit", "0"], ["save_total_limit"]),
    (
        "early stopping without eval",
        ["--early_stopping_patience", "2", "--eval_strategy", "no"],
        ["early stopping needs evaluation"],
    ),
    ("unknown attention", ["--attention", "flash"], ["attention"]),
    ("max_length over the range", ["--max_length", "9000"], ["max_length"]),
    (
        "max_length over the model's positions",
        ["--model_name", "{tiny}", "--max_length", "256"],
        ["max_length 256", "128 positions"],
    ),
    ("model folder missing", ["--model_name", "{tmp}/models/none"], ["not found"]),
    ("model folder without config", ["--model_name", "{tmp}/my project/.."], ["config.json"]),
    ("model is a file", ["--model_name", "{tmp}/a file"], ["not a file"]),
    ("pickle-only model", ["--model_name", "{tmp}/pickled-model"], ["pickle"]),
    ("bad toml", ["--config", "{tmp}/bad.toml"], ["not valid TOML", "line 2"]),
    ("unknown toml setting", ["--config", "{tmp}/unknown.toml"], ["lora.rank"]),
    ("missing config file", ["--config", "{tmp}/none.toml"], ["not found"]),
    ("empty config file", ["--config", "{tmp}/empty.toml"], ["empty.toml", "empty"]),
    ("blank config file", ["--config", "{tmp}/blank.toml"], ["empty"]),
    ("config not UTF-8", ["--config", "{tmp}/latin1.toml"], ["UTF-8"]),
    ("empty data file", ["--data_file_path", "{tmp}/empty.csv"], ["empty"]),
    ("broken jsonl", ["--data_file_path", "{tmp}/broken.jsonl"], ["line 2", "not valid JSON"]),
    ("single class", ["--data_file_path", "{tmp}/one.jsonl"], ["only one class"]),
    (
        "output folder holds the user's files",
        ["--output_dir", "{tmp}/my project"],
        ["not empty", "README.md", "--overwrite"],
    ),
    ("output folder is a file", ["--output_dir", "{tmp}/a file"], ["is a file"]),
    (
        "output folder under a file",
        ["--output_dir", "{tmp}/a file/adapter"],
        ["cannot create", "is a file"],
    ),
    (
        "output folder is another run's adapter",
        ["--output_dir", "{adapter}"],
        ["another run", "--overwrite"],
    ),
    (
        "output folder is another run's directory",
        ["--output_dir", "{old}"],
        ["another run", "--overwrite"],
    ),
]
OTHER = [
    ("resume a finished run", ["resume", "{done}"], ["already finished"]),
    ("resume a run with an empty config", ["resume", "emptied"], ["config.toml", "empty"]),
    ("resume an unknown run", ["resume", "nosuchrun"], ["no run matches"]),
    ("stop a finished run", ["stop", "{done}"], ["not running"]),
    ("predict a pickle-only model", ["predict", "{tmp}/pickled-model", "hi"], ["pickle"]),
    ("predict a .bin adapter", ["predict", "{tmp}/bin-adapter", "hi"], ["pickle", "adapter"]),
    ("predict nothing", ["predict", "{done}"], ["nothing to predict"]),
    (
        "predict over an existing file",
        ["predict", "{done}", "hi", "--out", "{tmp}/existing.jsonl"],
        ["exists", "--overwrite"],
    ),
    ("predict into a folder", ["predict", "{done}", "hi", "--out", "{tmp}/my project"], ["folder"]),
    ("export nothing", ["export", "{done}"], ["say what to export"]),
    (
        "export into the user's folder",
        ["export", "{done}", "--adapter", "{tmp}/my project"],
        ["not empty", "--overwrite"],
    ),
    ("export onto a file", ["export", "{done}", "--adapter", "{tmp}/a file"], ["is a file"]),
    (
        "export onto the adapter itself",
        ["export", "{done}", "--merged", "{adapter}"],
        ["adapter folder itself"],
    ),
]
CASES = [(n, ["train", *a], f) for n, a, f in TRAIN] + OTHER


def test_at_least_forty_cases() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize(("name", "args", "fragments"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(world, capsys, name: str, args: list[str], fragments: list[str]) -> None:
    before = tree_hash(world["tmp"], world["tiny"])
    code = main(["--runs-root", str(world["root"]), *[fill(a, world) for a in args]])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err + out
    for fragment in fragments:
        assert fill(fragment, world) in lines[0], lines[0]
    assert tree_hash(world["tmp"], world["tiny"]) == before, "a user file changed"
