"""Hugging Face users' habits on the command line: flag aliases, typos, pipes, no run id."""

from __future__ import annotations

import subprocess

import pytest

from engine.cli.config_flags import config_from_args
from engine.cli.parser import build_parser
from tests.cli_helpers import CLI, assert_user_error, cli_env, run_cli


@pytest.mark.parametrize(
    "flags, key, value",
    [
        (["--num_train_epochs", "2"], "epochs", 2.0),
        (["--per_device_train_batch_size", "4"], "batch_size", 4),
        (["--gradient_accumulation_steps", "3"], "grad_accum", 3),
        (["--lr_scheduler_type", "cosine"], "lr_scheduler", "cosine"),
        (["--model_name_or_path", "some/model"], "model_name", "some/model"),
        (["--bf16"], "precision", "bf16"),
        (["--fp32"], "precision", "fp32"),
    ],
)
def test_training_arguments_names_are_aliases(flags, key, value):
    args = build_parser().parse_args(["train", *flags])
    assert config_from_args(args).get(key) == value


def test_fp16_flag_gets_the_precision_refusal(tmp_path):
    proc = run_cli("train", "--fp16", runs_root=tmp_path / "runs")
    assert_user_error(proc, "fp16")


def test_abbreviated_flag_is_not_silently_guessed(tmp_path):
    proc = run_cli("train", "--learning_rat", "1e-3", runs_root=tmp_path / "runs", timeout=60)
    assert proc.returncode == 2 and "did you mean --learning_rate" in proc.stderr


def test_unknown_flag_shows_train_usage_and_a_guess(tmp_path):
    proc = run_cli("train", "--learnig_rate", "1e-3", runs_root=tmp_path / "runs", timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "usage: finetune-tui train" in proc.stderr
    assert "did you mean --learning_rate" in proc.stderr


def test_runs_json_into_a_closed_pipe_is_quiet(tmp_path):
    from tests.fakeruns import make_fake_run

    root = tmp_path / "runs"
    for i in range(150):
        make_fake_run(root, f"run-{i:03d}", "finished")
    cmd = " ".join(CLI) + " runs --json | head -1"
    proc = subprocess.run(
        ["bash", "-c", cmd], capture_output=True, text=True, env=cli_env(root), timeout=300
    )
    assert proc.stdout.strip() == "["
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_predict_with_no_finished_run_says_a_run_is_needed(tmp_path):
    proc = run_cli("predict", "a wonderful film", runs_root=tmp_path / "runs")
    assert_user_error(proc, "which run")
