"""Preference tuning (DPO, ORPO): losses, pairs, the reference, a tiny run, resume, start adapter."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.rundir.events import Checkpoint, Finished, Started, Step, read_events
from tests.cli_helpers import assert_user_error, run_cli
from tests.tiny_lm import make_tiny_decoder

REVIEWS = ["a great film", "dull and slow", "fine acting", "awful plot", "nice story", "poor"]


def pair_rows(n: int = 48) -> list[dict]:
    """Sentiment pairs: the right label word chosen, the wrong one rejected."""
    rows = []
    for i in range(n):
        right, wrong = ("positive", "negative") if i % 6 in (0, 2, 4) else ("negative", "positive")
        prompt = f"Is this review positive or negative? {REVIEWS[i % 6]}"
        rows.append({"prompt": prompt, "chosen": right, "rejected": wrong})
    return rows


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def decoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_decoder(tmp_path_factory.mktemp("dec") / "tiny-llama", "llama")


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", pair_rows())


def config(decoder: Path, data: Path, **training: object) -> RunConfig:
    cfg = RunConfig()
    cfg.task = "preference"
    cfg.model.model_name = str(decoder)
    cfg.model.max_length = 64
    cfg.data.data_file_path = str(data)
    t = cfg.training
    t.precision, t.batch_size, t.learning_rate, t.logging_steps = "fp32", 4, 0.02, 1
    t.eval_strategy, t.save_strategy, t.checkpoint_minutes = "no", "no", 0
    for key, value in training.items():
        setattr(t, key, value)
    return cfg


# -- the losses against plain formulas ---------------------------------------------------------
def test_dpo_and_orpo_losses_equal_the_reference_formulas() -> None:
    import torch

    from engine.tasks.preference.losses import dpo_losses, orpo_odds_term

    pc, pr = torch.tensor([-3.0, -7.5]), torch.tensor([-4.0, -2.0])
    rc, rr = torch.tensor([-3.5, -6.0]), torch.tensor([-3.0, -2.5])
    beta = 0.1
    got = dpo_losses(pc, pr, rc, rr, beta)
    for i in range(2):
        z = beta * ((pc[i] - rc[i]) - (pr[i] - rr[i])).item()
        assert got.losses[i].item() == pytest.approx(math.log(1 + math.exp(-z)), rel=1e-6)
        assert got.chosen_rewards[i].item() == pytest.approx(beta * (pc[i] - rc[i]).item())
    mc, mr = torch.tensor([-0.4, -1.2]), torch.tensor([-0.9, -0.3])
    odds = orpo_odds_term(mc, mr, 0.25)
    for i in range(2):
        a, b = math.exp(mc[i].item()), math.exp(mr[i].item())
        log_odds = math.log(a / (1 - a)) - math.log(b / (1 - b))
        expected = -0.25 * math.log(1 / (1 + math.exp(-log_odds)))
        assert odds.losses[i].item() == pytest.approx(expected, rel=1e-5)


def test_fused_token_loss_gives_the_plain_gradient() -> None:
    import torch

    from engine.tasks.causal_lm.answer_logits import answer_token_nll

    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False).requires_grad_(False)
    hidden = torch.randn(40, 16, requires_grad=True)
    targets = torch.randint(0, 50, (40,))
    weights = torch.randn(40)
    (answer_token_nll(head, hidden, targets) * weights).sum().backward()
    fused = hidden.grad.clone()
    hidden.grad = None
    plain = torch.nn.functional.cross_entropy(head(hidden), targets, reduction="none")
    (plain * weights).sum().backward()
    assert torch.allclose(fused, hidden.grad, atol=1e-5)


# -- data: every bad row gets one line ----------------------------------------------------------
BAD_ROWS = [
    ({"prompt": "p", "chosen": "a"}, "needs a 'rejected' column"),
    ({"prompt": "p", "rejected": "a"}, "needs a 'chosen' column"),
    ({"prompt": "p", "chosen": "same", "rejected": "same"}, "chosen and rejected are the same"),
    ({"prompt": "p", "chosen": "", "rejected": "b"}, "empty chosen answer"),
    ({"prompt": "p", "chosen": "a", "rejected": "  "}, "empty rejected answer"),
    ({"prompt": "", "chosen": "a", "rejected": "b"}, "empty prompt"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_ROWS)
def test_a_bad_pair_is_named_by_file_and_line_in_the_form(
    bad: dict, message: str, decoder: Path, tmp_path: Path
) -> None:
    from engine.tasks.inspect import inspect_data

    good = {"prompt": "p", "chosen": "a", "rejected": "b"}
    rows = [dict(good), dict(good), bad] if "column" not in message else [bad, bad]
    data = write(tmp_path / "bad.jsonl", rows)
    info = inspect_data(config(decoder, data))
    assert info.error is not None and message in info.error.message, info.error
    if "column" not in message:
        assert info.error.where == "bad.jsonl line 3", info.error.where


@pytest.mark.parametrize(
    ("bad", "message"), [BAD_ROWS[0], BAD_ROWS[2], BAD_ROWS[3]], ids=["column", "same", "empty"]
)
def test_a_bad_pair_exits_2_with_one_line_in_the_cli(
    bad: dict, message: str, decoder: Path, tmp_path: Path
) -> None:
    good = {"prompt": "p", "chosen": "a", "rejected": "b"}
    data = write(tmp_path / "bad.jsonl", [good, bad] if "column" not in message else [bad])
    proc = run_cli(
        "train", "--task", "preference", "--model_name", str(decoder),
        "--data_file_path", str(data), "--max_steps", "1",
        runs_root=tmp_path / "runs",
    )  # fmt: skip
    line = assert_user_error(proc, message)
    if "column" not in message:
        assert "bad.jsonl line 2" in line


def test_pairs_as_messages_and_as_whole_conversations_share_the_prompt() -> None:
    from engine.tasks.preference.pairs import normalise_pair

    user = {"role": "user", "content": "hi"}
    good, bad = {"role": "assistant", "content": "hello"}, {"role": "assistant", "content": "go"}
    as_messages = normalise_pair({"prompt": [user], "chosen": [good], "rejected": [bad]}, "r")
    whole = normalise_pair({"chosen": [user, good], "rejected": [user, bad]}, "r")
    repeated = normalise_pair(
        {"prompt": "hi", "chosen": [user, good], "rejected": [user, bad]}, "r"
    )
    for pair in (as_messages, whole, repeated):
        assert pair.prompt == [user] and pair.chosen == [good] and pair.rejected == [bad]


def test_bad_settings_are_refused_by_the_config() -> None:
    cfg = RunConfig()
    cfg.task = "preference"
    cfg.training.preference_loss = "ipo"
    cfg.training.beta = 0
    cfg.lora.init_adapter = "/no/such/run"
    problems = cfg.problems()
    assert "dpo or orpo" in problems["training.preference_loss"]
    assert "beta must be positive" in problems["training.beta"]
    assert "no such folder" in problems["lora.init_adapter"]


# -- the model: reference = the base with the adapter off --------------------------------------
def test_reference_log_probs_equal_the_base_models(decoder: Path, pairs_file: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from engine.tasks import get_task
    from engine.tasks.preference.forward import completion_logps

    cfg = config(decoder, pairs_file)
    task = get_task("preference")
    data = task.prepare_data(cfg, None)
    loaded = task.load_model(cfg, data, "fp32")
    encoded = task.encode(cfg, data, loaded.tokenizer, None)
    batch = task.collator(cfg, loaded.tokenizer)([encoded.train[i] for i in range(4)])
    model = loaded.model
    with torch.no_grad():  # move the adapter away from zero so policy and reference differ
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.add_(0.05 * torch.randn_like(param))
    model.eval()
    with torch.no_grad():
        stats = model(**batch).logits
    plain = AutoModelForCausalLM.from_pretrained(decoder, dtype=torch.float32).eval()
    with torch.no_grad():
        base_sums, _ = completion_logps(plain, **batch)
    assert torch.allclose(stats[:, 2], base_sums[:4], atol=1e-4)
    assert torch.allclose(stats[:, 3], base_sums[4:], atol=1e-4)
    assert not torch.allclose(stats[:, 0], stats[:, 2], atol=1e-3)  # the policy moved


def test_parts_of_a_step_give_the_whole_batchs_loss(decoder: Path, pairs_file: Path) -> None:
    import torch

    from engine.tasks import get_task
    from engine.tasks.preference.collate import split_pairs

    cfg = config(decoder, pairs_file, preference_loss="orpo")
    task = get_task("preference")
    data = task.prepare_data(cfg, None)
    loaded = task.load_model(cfg, data, "fp32")
    encoded = task.encode(cfg, data, loaded.tokenizer, None)
    batch = task.collator(cfg, loaded.tokenizer)([encoded.train[i] for i in range(6)])
    model = loaded.model.train()
    whole = model(**batch).loss
    parts = split_pairs(batch, part_tokens=40)
    assert len(parts) > 1
    summed = sum(model(**part).loss for part in parts)
    assert torch.allclose(whole, summed, atol=1e-5)


def test_a_preference_part_holds_about_a_megabyte_of_mlp_activations() -> None:
    from transformers import LlamaConfig

    from engine.tasks.preference.collate import PART_BLOCK_BYTES, pair_part_tokens

    smollm = LlamaConfig(hidden_size=576, intermediate_size=1536)
    assert pair_part_tokens(smollm, "fp32") == PART_BLOCK_BYTES // (1536 * 4)  # 170
    assert pair_part_tokens(smollm, "bf16") == PART_BLOCK_BYTES // (1536 * 2)
    assert pair_part_tokens(LlamaConfig(intermediate_size=64), "fp32") == 2048  # tiny: one part
    assert pair_part_tokens(LlamaConfig(intermediate_size=14336), "fp32") == 128  # 8B: a pair


# -- runs -----------------------------------------------------------------------------------------
def train(cfg: RunConfig, root: Path) -> Path:
    from engine.rundir.runs import new_run_dir
    from engine.training.train import run_training

    run_dir = new_run_dir(cfg.validate(), root)
    assert run_training(run_dir) == 0
    return run_dir


def test_a_tiny_dpo_run_moves_the_reward_margin_up(
    decoder: Path, pairs_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # mixed batches: length grouping would put one review (one chosen word) in a whole batch
    cfg = config(
        decoder, pairs_file, max_steps=16, batch_size=8, learning_rate=0.01, warmup_ratio=0,
        lr_scheduler="constant", group_by_length=False, eval_strategy="steps", eval_steps=8,
    )  # fmt: skip
    cfg.data.eval_file_path = str(pairs_file)  # scored on the pairs it learns
    run_dir = train(cfg, tmp_path / "runs")
    events = read_events(run_dir)
    margins = [e.metrics["margin"] for e in events if isinstance(e, Step) and e.metrics]
    assert len(margins) == 16 and abs(margins[0]) < 1e-6  # the fresh adapter is the reference
    assert sum(margins[-4:]) / 4 > 0.05, margins
    evals = [e.metrics for e in events if e.type == "eval"]
    assert {"accuracy", "margin", "chosen_logp", "rejected_logp"} <= set(evals[-1])
    assert evals[-1]["margin"] > max(0.1, evals[0]["margin"]), evals
    assert evals[-1]["accuracy"] > 0.9
    (finished,) = [e for e in events if isinstance(e, Finished)]
    saved = Path(finished.output_dir)
    assert (saved / "adapter_config.json").is_file()
    from engine.rundir.weights import task_of

    assert task_of(saved) == "preference"
    # try-it chat and a merged export work as for causal-lm
    from engine.cli.commands import main
    from engine.tasks import get_task
    from engine.tasks.causal_lm.formats import Chat
    from engine.tasks.causal_lm.generation import Sampling, generate

    model, tok = get_task("preference").load_for_inference(saved)
    chat = Chat([{"role": "user", "content": "Is this review positive or negative? poor"}])
    (answer,) = generate(model, tok, [chat], Sampling(max_new_tokens=3))
    assert isinstance(answer, str)
    merged = tmp_path / "merged"
    assert (
        main(
            ["--runs-root", str(tmp_path / "runs"), "export", run_dir.name, "--merged", str(merged)]
        )
        == 0
    )
    assert (merged / "config.json").is_file()
    assert "preference-tuned, DPO beta 0.1" in (merged / "README.md").read_text()


def test_an_orpo_run_starts_from_an_sft_runs_adapter(
    decoder: Path, pairs_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from safetensors.torch import load_file

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root = tmp_path / "runs"
    sft_data = write(
        tmp_path / "sft.jsonl",
        [{"prompt": r["prompt"], "completion": r["chosen"]} for r in pair_rows()],
    )
    sft = config(decoder, sft_data, max_steps=4)
    sft.task = "causal-lm"
    sft.lora.lora_r = 4
    sft_dir = train(sft, root)
    cfg = config(decoder, pairs_file, max_steps=2, preference_loss="orpo", learning_rate=1e-9)
    cfg.lora.init_adapter = str(sft_dir)
    run_dir = train(cfg, root)
    logs = " ".join(e.message for e in read_events(run_dir) if e.type == "log")
    assert "LoRA starts from the adapter" in logs and "ORPO" in logs
    before = load_file(sft_dir / "adapter" / "adapter_model.safetensors")
    after = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    key = next(k for k in before if "lora_B" in k)
    assert before[key].abs().sum() > 0
    assert torch.allclose(before[key], after[key], atol=1e-5)  # lr ~0: still the SFT adapter


@pytest.mark.slow
def test_a_preference_run_resumes_after_kill_9(
    decoder: Path, pairs_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.rundir.runs import engine_alive, read_status, run_info
    from engine.runs.launch import launch, resume
    from tests.engine.runs.test_runs_lifecycle import wait_for
    from tests.fakeruns import engine_env

    root = tmp_path / "runs"
    for key, value in engine_env(root).items():
        monkeypatch.setenv(key, value)
    total = 40
    cfg = config(decoder, pairs_file, max_steps=total, save_strategy="steps", save_steps=4)
    run_dir = launch(cfg, root)
    wait_for(lambda: [e for e in read_events(run_dir) if isinstance(e, Checkpoint)], "a checkpoint")
    os.kill(int(read_status(run_dir)["pid"]), signal.SIGKILL)
    wait_for(lambda: not engine_alive(run_dir), "the killed engine to be gone", 60)
    assert run_info(run_dir).state == "crashed"
    resume(run_dir)
    wait_for(lambda: run_info(run_dir).state == "finished", "the resumed run to finish")
    events = read_events(run_dir)
    starts = [e for e in events if isinstance(e, Started)]
    assert len(starts) == 2 and starts[1].resumed_from_step > 0
    later = [e for e in events[events.index(starts[1]) :] if isinstance(e, Step)]
    assert later and min(e.step for e in later) > starts[1].resumed_from_step
    assert max(e.step for e in later) == total and all("margin" in e.metrics for e in later)
