"""A whole causal-LM run through the CLI: events, samples, adapter, predict, export, bad inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from engine.cli.commands import main
from engine.rundir.events import read_events
from tests.cli_helpers import train_in_process
from tests.tiny_lm import make_tiny_decoder

REVIEWS = ["a great film", "dull and slow", "fine acting", "awful plot", "nice story", "poor"]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def chat_rows(n: int = 32) -> list[dict]:
    """OpenAI `messages` records (every third one multi-turn)."""
    rows = []
    for i in range(n):
        answer = "positive" if i % 6 in (0, 2, 4) else "negative"
        turns = [
            {"role": "user", "content": f"Is this review positive or negative? {REVIEWS[i % 6]}"},
            {"role": "assistant", "content": answer},
        ]
        if i % 3 == 0:
            turns += [
                {"role": "user", "content": "Are you sure?"},
                {"role": "assistant", "content": f"yes, {answer}"},
            ]
        rows.append({"messages": turns})
    return rows


@pytest.fixture(scope="module")
def decoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_decoder(tmp_path_factory.mktemp("dec") / "tiny-llama", "llama")


FLAGS = [
    "--max_steps", "4", "--batch_size", "4", "--grad_accum", "2", "--max_length", "64",
    "--eval_strategy", "steps", "--eval_steps", "2", "--save_strategy", "steps",
    "--save_steps", "2", "--logging_steps", "1", "--precision", "fp32",
    "--learning_rate", "0.02", "--max_eval_rows", "8",
]  # fmt: skip


@pytest.fixture(scope="module")
def run(decoder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One training run (module-wide): its directory, printed output and events."""
    tmp = tmp_path_factory.mktemp("sft")
    data = _write(tmp / "chats.jsonl", chat_rows())
    root = tmp / "runs"
    run_dir = train_in_process(root, decoder, data, *FLAGS)
    return {"dir": run_dir, "root": root, "events": read_events(run_dir), "tmp": tmp}


def test_run_reports_sft_metrics_samples_and_notes(run: dict, decoder: Path) -> None:
    events = run["events"]
    started = next(e for e in events if e.type == "started")
    assert started.task == "causal-lm" and started.labels == []
    evals = [e for e in events if e.type == "eval"]
    assert [e.step for e in evals] == [2, 4]
    for e in evals:
        assert {"loss", "perplexity", "accuracy", "answer_loss"} <= set(e.metrics)
        assert e.metrics["perplexity"] == pytest.approx(
            math.exp(e.metrics["answer_loss"]), rel=1e-3
        )
    samples = [e for e in events if e.type == "sample"]
    assert [(s.step, s.index) for s in samples] == [(2, 0), (2, 1), (2, 2), (4, 0), (4, 1), (4, 2)]
    assert all(s.prompt.startswith(("Is this review", "Are you sure")) for s in samples)
    assert all(s.reference for s in samples)
    logs = " ".join(e.message for e in events if e.type == "log")
    assert "ChatML" in logs  # the tiny tokenizer has no template of its own
    # causal LM loss uses num_items_in_batch: with grad_accum 2 the logged loss is not doubled
    first = next(e for e in events if e.type == "step" and e.loss is not None)
    vocab = 400
    assert first.loss < 1.3 * math.log(vocab)


def test_adapter_carries_template_and_generation_config(run: dict) -> None:
    final = next(e for e in run["events"] if e.type == "finished")
    out = Path(final.output_dir)
    files = {p.name for p in out.iterdir()}
    assert {
        "adapter_config.json",
        "generation_config.json",
        "README.md",
        "run_config.toml",
    } <= files
    config = json.loads((out / "tokenizer_config.json").read_text())
    template = config.get("chat_template") or (out / "chat_template.jinja").read_text()
    assert "<|im_start|>" in template
    assert json.loads((out / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"


def test_predict_prints_the_greedy_completion(run: dict, capsys: pytest.CaptureFixture) -> None:
    from engine.rundir.weights import find_weights
    from engine.tasks.causal_lm.generation import Sampling, generate
    from engine.tasks.causal_lm.modeling import load_generator
    from engine.tasks.causal_lm.predict import user_chat

    prompt = "Is this review positive or negative? fine acting"
    code = main(
        ["--runs-root", str(run["root"]), "predict", run["dir"].name, prompt,
         "--max_new_tokens", "5"]
    )  # fmt: skip
    assert code == 0
    model, tok = load_generator(find_weights(run["dir"]))
    expected = generate(model, tok, [user_chat(prompt)], Sampling(max_new_tokens=5))[0]
    assert capsys.readouterr().out == expected + "\n"


def test_predict_a_file_of_records(run: dict, tmp_path: Path, capsys) -> None:
    prompts = _write(
        tmp_path / "prompts.jsonl",
        [
            {"instruction": "Is this review positive or negative?", "input": "nice story"},
            {"instruction": "Is this review positive or negative?", "input": "poor"},
        ],
    )
    out = tmp_path / "out.jsonl"
    code = main(
        ["--runs-root", str(run["root"]), "predict", run["dir"].name, "--file", str(prompts),
         "--out", str(out), "--max_new_tokens", "4", "--temperature", "0"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2
    assert all("completion" in r and r["input"] in ("nice story", "poor") for r in records)


def test_export_merged_with_modelfile_and_gguf_message(run: dict, tmp_path: Path, capsys) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = tmp_path / "merged"
    code = main(
        ["--runs-root", str(run["root"]), "export", run["dir"].name, "--merged", str(merged)]
    )
    assert code == 0
    model = AutoModelForCausalLM.from_pretrained(merged)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert AutoTokenizer.from_pretrained(merged).chat_template
    assert "FROM ." in (merged / "Modelfile").read_text()
    assert (merged / "generation_config.json").is_file()
    code = main(
        ["--runs-root", str(run["root"]), "export", run["dir"].name, "--merged",
         str(tmp_path / "m2"), "--gguf", "--llama-cpp", str(tmp_path / "nowhere")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "convert_hf_to_gguf.py" in err and "FINETUNE_TUI_LLAMA_CPP" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("rows", "flags", "message"),
    [
        ([{"text": "great film", "label": "pos"}] * 8, [], "use --task classification"),
        (
            [{"messages": [{"role": "robot", "content": "hi"}]}] * 8,
            [],
            "unknown role 'robot'",
        ),
        ([{"prompt": "hi", "completion": ""}] * 8, [], "empty completion"),
        (
            [{"prompt": "word " * 60, "completion": "ok"}] * 8,
            ["--max_length", "16"],
            "prompt is longer than max_length=16",
        ),
    ],
)
def test_bad_inputs_get_one_clear_line(
    decoder: Path, tmp_path: Path, capsys, rows: list, flags: list, message: str
) -> None:
    data = _write(tmp_path / "bad.jsonl", rows)
    code = main(
        ["--runs-root", str(tmp_path / "runs"), "train", "--task", "causal-lm",
         "--model_name", str(decoder), "--data_file_path", str(data), "--max_steps", "1", *flags]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1
