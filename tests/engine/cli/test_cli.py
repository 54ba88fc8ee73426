"""The `finetune-tui` console script, run for real in subprocesses: a tiny end-to-end training
(tiny BERT + the bundled example data) shared by the tests below it, and its adapters loaded with
plain peft. Flags, help and bad input are in test_cli_input.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.config import RunConfig
from engine.data.readers import EXAMPLE_DATA
from engine.rundir.events import read_events
from tests.cli_helpers import (
    CLI,
    ROOT,
    cli_env,
    last_json,
    run_cli,
    run_dirs,
)


# -- models -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(request, tmp_path_factory) -> Path:
    """The shared tiny BERT (conftest's `tiny_model`), or one built here."""
    try:
        return Path(request.getfixturevalue("tiny_model"))
    except pytest.FixtureLookupError:
        from tests.tiny import make_tiny_bert

        return make_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="module")
def headless_model_dir(model_dir, tmp_path_factory) -> Path:
    """The tiny BERT saved without a classification head (like a real pretrained encoder)."""
    from transformers import BertModel

    folder = tmp_path_factory.mktemp("models") / "tiny-encoder"
    shutil.copytree(model_dir, folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    BertModel.from_pretrained(model_dir).save_pretrained(folder, safe_serialization=True)
    return folder


# -- one tiny end-to-end run, shared --------------------------------------------------------------
MAX_STEPS = 4


@pytest.fixture(scope="module")
def trained(model_dir, tmp_path_factory):
    """`finetune-tui --runs-root R train` with the seed's flags, 4 steps, log every 3, eval every 2."""
    base = tmp_path_factory.mktemp("e2e")
    root, out = base / "runs", base / "my adapter"
    proc = subprocess.run(
        [
            *CLI,
            "--runs-root",
            str(root),
            "train",
            "--model_name",
            str(model_dir),
            "--data-file-path",
            str(EXAMPLE_DATA),
            "--output_dir",
            str(out),
            "--max_steps",
            str(MAX_STEPS),
            "--logging_steps",
            "3",
            "--eval_strategy",
            "steps",
            "--eval_steps",
            "2",
            "--save_strategy",
            "no",
            "--batch_size",
            "8",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=cli_env(None),
        cwd=base,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dirs = run_dirs(root)
    assert len(dirs) == 1, dirs
    return SimpleNamespace(
        proc=proc, root=root, run_dir=dirs[0], out=out, events=read_events(dirs[0])
    )


def test_train_prints_a_progress_line_per_logging_step(trained):
    out = trained.proc.stdout
    assert "Traceback" not in out + trained.proc.stderr
    assert f"run directory: {trained.run_dir}" in out
    steps = [int(m) for m in re.findall(rf"^step (\d+)/{MAX_STEPS} ", out, flags=re.M)]
    assert steps == [1, 3, 4]  # the first step, every logging_steps, and always the last
    step_line = next(line for line in out.splitlines() if line.startswith("step 3/"))
    assert "loss " in step_line and "ETA" in step_line
    assert re.search(r"^eval at step 2 .*accuracy \d\.\d{4}", out, flags=re.M)
    assert f"finished at step {MAX_STEPS}" in out
    assert str(trained.out) in out.splitlines()[-1]


def test_train_writes_the_events(trained):
    events = trained.events
    types = [e.type for e in events]
    for kind in ("started", "phase", "step", "eval", "finished"):
        assert kind in types
    assert types[-1] == "finished"
    assert types.index("started") < types.index("step") < types.index("finished")
    started = next(e for e in events if e.type == "started")
    assert started.total_steps == MAX_STEPS
    assert started.labels == ["negative", "positive"]
    assert started.train_size + started.eval_size == 320
    assert started.eval_size > 0
    assert started.config["training"]["max_steps"] == MAX_STEPS
    assert started.threads == 1
    assert 0 < started.trainable_params < started.total_params
    steps = [e for e in events if e.type == "step"]
    assert [e.step for e in steps] == [1, 3, 4]
    assert all(e.loss is not None and e.loss > 0 for e in steps)
    evals = [e for e in events if e.type == "eval"]
    assert {e.step for e in evals} >= {2, 4}
    assert all(0.0 <= e.metrics["accuracy"] <= 1.0 for e in evals)
    finished = events[-1]
    assert finished.step == MAX_STEPS
    assert Path(finished.output_dir) == trained.out
    assert "accuracy" in finished.metrics
    phases = [e.name for e in events if e.type == "phase"]
    for name in ("loading model", "tokenizing", "training", "evaluating", "saving"):
        assert name in phases
    # the engine chose how its OpenMP threads wait before torch loaded (so the choice took)
    logs = [e.message for e in events if e.type == "log"]
    assert any(m.startswith("waiting threads ") for m in logs), logs


def test_run_directory_holds_the_config(trained):
    cfg = RunConfig.load(trained.run_dir / "config.toml")
    assert cfg.training.max_steps == MAX_STEPS
    assert cfg.data.data_file_path == str(EXAMPLE_DATA)
    assert Path(cfg.output.output_dir) == trained.out
    assert trained.run_dir.parent == trained.root


def test_output_dir_holds_the_adapter(trained):
    out = trained.out
    for name in ("adapter_config.json", "adapter_model.safetensors", "labels.json", "config.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.bin"))
    assert not (trained.run_dir / "adapter").exists()  # --output_dir moved it
    labels = json.loads((out / "labels.json").read_text())
    assert labels == {"id2label": {"0": "negative", "1": "positive"}}
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["label2id"] == {"negative": 0, "positive": 1}
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["task_type"] == "SEQ_CLS"
    assert adapter["r"] == 8 and adapter["lora_alpha"] == 16
    assert Path(adapter["base_model_name_or_path"]).resolve() == trained_model(trained)


def trained_model(trained) -> Path:
    return Path(RunConfig.load(trained.run_dir / "config.toml").model.model_name).resolve()


def test_runs_lists_the_finished_run(trained):
    proc = subprocess.run(
        [*CLI, "--runs-root", str(trained.root), "runs", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(None),
    )
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(proc.stdout)
    assert [r["id"] for r in runs] == [trained.run_dir.name]
    assert runs[0]["state"] == "finished"
    assert runs[0]["step"] == MAX_STEPS


# -- a three-label run through --config and $FINETUNE_TUI_RUNS --------------------------------------
@pytest.fixture(scope="module")
def three_labels(headless_model_dir, tmp_path_factory):
    """String labels with three classes; settings from a TOML file; default adapter location."""
    base = tmp_path_factory.mktemp("three")
    rows = [json.loads(line) for line in EXAMPLE_DATA.read_text().splitlines()]
    for i, row in enumerate(rows):
        if i % 3 == 0:
            row["label"] = "neutral"
    data = base / "three.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = RunConfig()
    cfg.model.model_name = str(headless_model_dir)
    cfg.data.data_file_path = str(data)
    cfg.training.max_steps = 2
    cfg.training.eval_strategy = "no"
    cfg.training.save_strategy = "no"
    cfg.training.threads = 1
    cfg.training.batch_size = 8
    cfg.save(base / "run.toml")
    root = base / "runs"
    proc = run_cli(
        "train",
        "--config",
        str(base / "run.toml"),
        "--lora-r",
        "4",
        "--run-name",
        "three",
        runs_root=root,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = run_dirs(root)
    return SimpleNamespace(
        proc=proc, run_dir=run_dir, adapter=run_dir / "adapter", base=headless_model_dir
    )


def test_config_file_run_writes_the_adapter_in_the_run_dir(three_labels):
    adapter = three_labels.adapter
    assert "three" in three_labels.run_dir.name
    assert (adapter / "adapter_model.safetensors").is_file()
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 4
    labels = json.loads((adapter / "labels.json").read_text())["id2label"]
    assert labels == {"0": "negative", "1": "neutral", "2": "positive"}
    finished = read_events(three_labels.run_dir)[-1]
    assert finished.type == "finished"
    assert Path(finished.output_dir) == adapter


# -- loading the adapters with plain peft, in a fresh process ---------------------------------------
LOAD_SCRIPT = textwrap.dedent("""
    import json, sys, torch
    from peft import AutoPeftModelForSequenceClassification, PeftModel
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    def labels_of(model):
        return {str(k): v for k, v in model.config.id2label.items()}

    def check(adapter, base):
        tok = AutoTokenizer.from_pretrained(adapter)
        batch = tok(["the food was great"], return_tensors="pt")
        config = AutoConfig.from_pretrained(adapter)
        model = PeftModel.from_pretrained(
            AutoModelForSequenceClassification.from_pretrained(base, config=config), adapter
        ).eval()
        with torch.no_grad():
            logits = model(**batch).logits.float()
        result = {"id2label": labels_of(model), "shape": list(logits.shape),
                  "logits": logits[0].tolist()}
        try:
            auto = AutoPeftModelForSequenceClassification.from_pretrained(adapter).eval()
            with torch.no_grad():
                result["auto_logits"] = auto(**batch).logits.float()[0].tolist()
        except Exception as exc:
            result["auto_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        # The model card's own "Load" code, as a user would paste it.
        card = open(adapter + "/README.md").read()
        code = card.split("```python", 1)[1].split("```", 1)[0].replace("PATH", repr(adapter))
        try:
            scope = {}
            exec(code, scope)
            result["card_id2label"] = labels_of(scope["model"])
            with torch.no_grad():
                result["card_logits"] = scope["model"](**batch).logits.float()[0].tolist()
        except Exception as exc:
            result["card_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        return result

    pairs = json.loads(sys.argv[1])
    print(json.dumps({name: check(adapter, base) for name, (adapter, base) in pairs.items()}))
""")


@pytest.fixture(scope="module")
def loaded(trained, three_labels):
    """Both adapters loaded with plain transformers + peft in one fresh interpreter."""
    pairs = {
        "two": [str(trained.out), str(trained_model(trained))],
        "three": [str(three_labels.adapter), str(three_labels.base)],
    }
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, json.dumps(pairs)],
        capture_output=True,
        text=True,
        timeout=600,
        env=cli_env(),
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    return last_json(proc.stdout)


@pytest.fixture(scope="module")
def loaded_two(loaded):
    return loaded["two"]


@pytest.fixture(scope="module")
def loaded_three(loaded):
    return loaded["three"]


def test_adapter_loads_with_peft_model_in_a_fresh_process(loaded_two):
    assert loaded_two["shape"] == [1, 2]
    assert loaded_two["id2label"] == {"0": "negative", "1": "positive"}


def test_adapter_loads_with_auto_peft_model(loaded_two):
    assert "auto_error" not in loaded_two, loaded_two.get("auto_error")
    assert loaded_two["auto_logits"] == pytest.approx(loaded_two["logits"], abs=1e-4)


def test_model_card_load_code_works(loaded_two):
    assert "card_error" not in loaded_two, loaded_two.get("card_error")
    assert loaded_two["card_id2label"] == {"0": "negative", "1": "positive"}
    assert loaded_two["card_logits"] == pytest.approx(loaded_two["logits"], abs=1e-4)


def test_three_label_adapter_loads_with_its_label_map(loaded_three):
    assert loaded_three["shape"] == [1, 3]
    assert loaded_three["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}


def test_model_card_load_code_works_for_three_labels(loaded_three):
    # Plain AutoPeftModelForSequenceClassification.from_pretrained(PATH) builds the base with its
    # default 2 labels; the card's code must pass the label map.
    assert "card_error" not in loaded_three, loaded_three.get("card_error")
    assert loaded_three["card_id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    assert loaded_three["card_logits"] == pytest.approx(loaded_three["logits"], abs=1e-4)


def test_three_labels_on_a_model_that_has_a_two_label_head(model_dir, tmp_path):
    rows = [{"text": f"example {i}", "label": "abc"[i % 3]} for i in range(30)]
    data = tmp_path / "abc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = run_cli(
        "train",
        "--model_name",
        str(model_dir),
        "--data_file_path",
        str(data),
        "--max_steps",
        "1",
        "--eval_strategy",
        "no",
        "--save_strategy",
        "no",
        "--threads",
        "1",
        runs_root=tmp_path / "runs",
    )
    assert proc.returncode == 0, proc.stdout[-2000:]


# -- predict without a run id, the final score --------------------------------------------------
def test_predict_without_a_run_id_uses_the_newest_finished_run(trained):
    proc = run_cli("predict", "a wonderful film", runs_root=trained.root)
    assert proc.returncode == 0, proc.stderr
    assert trained.run_dir.name in proc.stderr
    assert "a wonderful film" in proc.stdout


def test_final_score_reuses_the_evaluation_of_the_kept_model(trained):
    evals = [e for e in trained.events if e.type == "eval"]
    finished = next(e for e in trained.events if e.type == "finished")
    assert evals[-1].step == finished.step == MAX_STEPS
    assert finished.metrics["accuracy"] == evals[-1].metrics["accuracy"]
    # No second evaluation of the same model after training.
    after = trained.events[trained.events.index(evals[-1]) :]
    assert not [e for e in after if e.type == "phase" and e.name == "evaluating"]


def test_every_command_help_prints_its_help_texts_whole() -> None:
    """A '%' in a setting's help text must not break argparse's help formatting."""
    import argparse

    from engine.cli.parser import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        text = sub.format_help()
        assert "option_strings" not in text, name
    assert "~10% slower" in commands.choices["train"].format_help()
