"""The CLI's flags, help and bad input, run for real in subprocesses (no training).

Bad input: exit code 2, ONE line on stderr starting with `error:`, no traceback, no run directory.
"""

from __future__ import annotations

import pytest

from engine.cli.config_flags import config_from_args
from engine.cli.parser import build_parser
from engine.config import RunConfig
from tests.cli_helpers import assert_user_error, run_cli, run_dirs


# -- help and flags (no training) ---------------------------------------------------------------------
def test_train_help_lists_seed_flags_and_config_fields(tmp_path):
    proc = run_cli("train", "--help", runs_root=tmp_path / "runs")
    assert proc.returncode == 0, proc.stderr
    for flag in (
        "--output_dir",
        "--model_name",
        "--data_file_path",
        "--data-file-path",
        "--lora-r",
        "--learning_rate",
        "--config",
        "--max_steps",
    ):
        assert flag in proc.stdout


@pytest.mark.parametrize(
    "flags",
    [
        ["--output_dir", "o", "--model_name", "m", "--data_file_path", "d.jsonl"],
        ["--output-dir", "o", "--model-name", "m", "--data-file-path", "d.jsonl"],
    ],
)
def test_seed_flags_map_to_the_config(flags):
    args = build_parser().parse_args(["train", *flags, "--lora-r", "4", "--use_dora"])
    cfg = config_from_args(args)
    assert (cfg.output.output_dir, cfg.model.model_name, cfg.data.data_file_path) == (
        "o",
        "m",
        "d.jsonl",
    )
    assert cfg.lora.lora_r == 4 and cfg.lora.use_dora is True


def test_save_config_and_config_with_overrides(tmp_path):
    first = tmp_path / "a.toml"
    proc = run_cli(
        "train",
        "--model-name",
        "some/model",
        "--lora_r",
        "4",
        "--epochs",
        "1.5",
        "--text_column",
        "sentence",
        "--save-config",
        str(first),
        runs_root=tmp_path / "runs",
    )
    assert proc.returncode == 0, proc.stderr
    cfg = RunConfig.load(first)
    assert (cfg.model.model_name, cfg.lora.lora_r, cfg.training.epochs) == ("some/model", 4, 1.5)
    assert cfg.data.text_column == "sentence"

    second = tmp_path / "b.toml"
    proc = run_cli(
        "train",
        "--config",
        str(first),
        "--lora-r",
        "2",
        "--save_config",
        str(second),
        runs_root=tmp_path / "runs",
    )
    assert proc.returncode == 0, proc.stderr
    cfg2 = RunConfig.load(second)
    assert cfg2.lora.lora_r == 2  # the flag wins over the file
    assert cfg2.model.model_name == "some/model" and cfg2.training.epochs == 1.5  # file kept
    assert run_dirs(tmp_path / "runs") == []  # --save-config does not start a run


def test_runs_uses_the_env_root(tmp_path):
    root = tmp_path / "my runs"
    proc = run_cli("runs", runs_root=root)
    assert proc.returncode == 0, proc.stderr
    assert str(root) in proc.stdout


# -- bad input --------------------------------------------------------------------------------------
BAD_TOML = "[training]\nlearning_rate = = 3\n"


@pytest.mark.parametrize(
    ("name", "args", "fragments"),
    [
        (
            "missing data file",
            ["--data_file_path", "{tmp}/nope.jsonl"],
            ["nope.jsonl", "not found"],
        ),
        (
            "bad text column",
            ["--text_column", "review_body"],
            ["review_body", "columns are: text, label"],
        ),
        ("bad label column", ["--label-column", "stars"], ["stars", "text, label"]),
        (
            "bad learning rate text",
            ["--learning_rate", "fast"],
            ["training.learning_rate", "'fast'", "number"],
        ),
        (
            "learning rate out of range",
            ["--learning-rate", "3"],
            ["learning_rate", "between 0 and 1"],
        ),
        ("fp16", ["--precision", "fp16"], ["fp16", "CPU", "bf16"]),
        ("bad lora rank", ["--lora_r", "0"], ["lora_r", "between 1 and 1024"]),
        ("infinite epochs", ["--epochs", "inf"], ["epochs", "finite"]),
        ("unknown scheduler", ["--lr_scheduler", "zigzag"], ["lr_scheduler", "cosine"]),
        (
            "model folder missing",
            ["--model_name", "{tmp}/models/none"],
            ["models/none", "not found"],
        ),
        ("model folder without config", ["--model_name", "{tmp}"], ["config.json"]),
        ("bad toml", ["--config", "{tmp}/bad.toml"], ["bad.toml", "not valid TOML", "line 2"]),
        ("unknown toml setting", ["--config", "{tmp}/unknown.toml"], ["lora.rank", "lora_r"]),
        ("missing config file", ["--config", "{tmp}/none.toml"], ["none.toml", "not found"]),
        ("empty data file", ["--data_file_path", "{tmp}/empty.csv"], ["empty.csv", "empty"]),
        (
            "broken jsonl",
            ["--data_file_path", "{tmp}/broken.jsonl"],
            ["broken.jsonl line 2", "not valid JSON"],
        ),
        ("single class", ["--data_file_path", "{tmp}/one.jsonl"], ["only one class"]),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, name, args, fragments):
    (tmp_path / "bad.toml").write_text(BAD_TOML)
    (tmp_path / "unknown.toml").write_text("[lora]\nrank = 4\n")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "broken.jsonl").write_text('{"text": "ok", "label": 1}\n{"text": \n')
    (tmp_path / "one.jsonl").write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 1}\n')
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    root = tmp_path / "runs"
    proc = run_cli("train", *args, runs_root=root)
    assert_user_error(proc, *[f.replace("{tmp}", str(tmp_path)) for f in fragments])
    assert run_dirs(root) == []  # failed before a run directory was made


def test_unknown_flag_is_a_usage_error(tmp_path):
    proc = run_cli("train", "--lora_rank", "4", runs_root=tmp_path / "runs")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--lora_rank" in proc.stderr


def test_target_modules_matching_nothing_lists_the_existing_names(tiny_model, tmp_path):
    """Found only once the model is loaded; still one stderr line, and no run left behind."""
    root = tmp_path / "runs"
    proc = run_cli(
        "train",
        "--model_name",
        str(tiny_model),
        "--target_modules",
        "q_proj,v_proj",
        "--max_steps",
        "1",
        "--threads",
        "1",
        runs_root=root,
    )
    line = assert_user_error(proc, "q_proj, v_proj")
    for name in ("query", "key", "value", "dense"):
        assert name in line
    assert "error:" not in proc.stdout  # the error is on stderr only
    assert run_dirs(root) == []
