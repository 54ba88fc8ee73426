"""CLI refusals up front and clean messages: wrong task, bad numbers, progress lines, Ctrl-C."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.core.errors import UserError
from engine.models.checks import check_model_task, not_a_decoder
from tests.cli_helpers import assert_user_error, run_cli, run_dirs


def test_causal_lm_on_an_encoder_is_refused_from_its_config() -> None:
    """The default MiniLM (a BERT) cannot be instruction-tuned; a decoder and T5 are told apart."""
    with pytest.raises(UserError) as info:
        check_model_task("", "causal-lm")  # "" = the default model
    assert "decoder-only" in info.value.message and "BertModel" in info.value.message
    assert info.value.field == "model.model_name"
    check_model_task("", "classification")
    assert not_a_decoder({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}) == ""
    assert not_a_decoder({"model_type": "t5", "is_encoder_decoder": True})
    assert not_a_decoder({"model_type": "bert", "is_decoder": True}) == ""


def test_causal_lm_on_an_encoder_cli_and_queue(tmp_path: Path) -> None:
    """`train --task causal-lm` on the default model: one line, exit 2, no run, no queue entry."""
    from engine.runs import queue

    root = tmp_path / "runs"
    proc = run_cli("train", "--task", "causal-lm", "--max_steps", "2", runs_root=root)
    assert_user_error(proc, "decoder-only", "classification")
    assert not run_dirs(root)
    cfg = RunConfig()
    cfg.task = "causal-lm"
    with pytest.raises(UserError):
        queue.add(root, cfg)
    assert not queue.entries(root)


def test_a_negative_learning_rate_gets_the_range_message(tmp_path: Path) -> None:
    """`--learning_rate -1e-3` (a space, not '=') reaches the range check: one line, no usage."""
    proc = run_cli("train", "--learning_rate", "-1e-3", runs_root=tmp_path / "runs")
    line = assert_user_error(proc, "learning_rate")
    assert "expected one argument" not in line and "usage" not in proc.stdout + proc.stderr


def test_progress_lines_fit_80_columns() -> None:
    """A step line with big figures and a sample line with long texts stay under 80 columns."""
    from engine.cli.event_lines import format_event
    from engine.rundir.events import Sample, Started, Step

    step = Step(
        step=12345,
        total_steps=56130,
        epoch=2.99,
        loss=10.1234,
        learning_rate=9.99e-4,
        samples_per_s=317.25,
        elapsed_s=3599,
        eta_s=35999,
    )
    lm_step = Step(step=95, total_steps=600, epoch=0.47, loss=1.5, tokens_per_s=6171.4)
    sample = Sample(index=0, prompt="x" * 300, generated="\n" * 64, reference="y" * 80)
    for event in (step, lm_step, sample):
        line = format_event(event)
        assert line is not None and len(line) < 80, (len(line or ""), line)
    started = Started(run_id="r", threads=1, total_steps=1, train_size=1, eval_size=1)
    assert "1 thread," in (format_event(started) or "")
    assert "1 step," in (format_event(started) or "")


def test_dropped_and_cut_counts_read_right() -> None:
    """'dropped 1 example', '1 of 1 example was cut'."""
    from engine.tasks.causal_lm.encoding import EncodeReport

    stats = EncodeReport(kept=1, truncated=1, dropped=[4])
    text = " ".join(stats.notes("train", 64))
    assert "dropped 1 example whose" in text and "1 of 1 example was cut" in text


def test_ctrl_c_says_how_to_resume_and_predict_is_quiet(tmp_path: Path) -> None:
    """A foreground causal-lm run stopped by Ctrl-C names the resume command; predict on it
    prints no transformers warning."""
    import signal
    import subprocess

    from tests.cli_helpers import CLI, cli_env
    from tests.e2e.test_causal_lm_run import _write, chat_rows
    from tests.tiny_lm import make_tiny_decoder

    decoder = make_tiny_decoder(tmp_path / "tiny-llama", "llama")
    data = _write(tmp_path / "chats.jsonl", chat_rows())
    root = tmp_path / "runs"
    args = ["train", "--task", "causal-lm", "--model_name", str(decoder), "--data_file_path",
            str(data), "--max_steps", "100000", "--max_length", "64", "--eval_strategy", "no",
            "--logging_steps", "1", "--precision", "fp32"]  # fmt: skip
    proc = subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=cli_env(root),
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:  # to the first step (pytest-timeout ends a run that never gets there)
        lines.append(line)
        if line.startswith("step "):
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=240)
    out = "".join(lines) + rest
    assert "stopped at step" in out, out[-2000:]
    run_id = next(p.name for p in run_dirs(root))
    assert f"finetune-tui resume {run_id}" in out
    pred = run_cli("predict", run_id, "hello", "--max_new_tokens", "2", runs_root=root)
    assert pred.returncode == 0, pred.stderr
    assert "Warning" not in pred.stderr, pred.stderr


def test_one_elapsed_time_everywhere(tmp_path: Path) -> None:
    """Monitor, run list, sweep row and `finetune-tui runs` show the same training time:
    neither the wait before the engine trains nor the pause between stop and resume count."""
    from engine.rundir.events import (
        Checkpoint,
        EventWriter,
        Finished,
        Phase,
        Started,
        Step,
        Stopped,
        training_elapsed,
    )
    from engine.rundir.runs import run_info
    from tui.runs_model.comparison import load_series
    from tui.watcher import RunProgress

    t = 1_000.0
    events = [
        Phase(time=t, name="loading data"),  # a slow load: not training
        Started(time=t + 40, total_steps=20),
        Step(time=t + 70, step=10, elapsed_s=30.0),
        Checkpoint(time=t + 71, step=10, path="c/checkpoint-10", reason="stop"),
        Stopped(time=t + 72, step=10),
    ]
    progress = RunProgress()
    progress.apply(events)
    progress.state = "stopped"
    at_stop = progress.elapsed(now=t + 500)
    assert at_stop == training_elapsed(events) == 31.0
    resumed = [
        Phase(time=t + 900, name="loading data"),  # resumed a quarter of an hour later
        Started(time=t + 930, total_steps=20, resumed_from_step=10),
    ]
    progress.apply(resumed)
    progress.state = "starting"
    assert progress.elapsed(now=t + 931) == at_stop, "never back, never the pause"
    rest = [
        Step(time=t + 960, step=20, elapsed_s=61.0),
        Finished(time=t + 965, step=20, elapsed_s=66.0, metrics={"accuracy": 0.8}),
    ]
    progress.apply(rest)
    progress.state = "finished"
    run = tmp_path / "runs" / "20240101-120000-demo"
    run.mkdir(parents=True)
    RunConfig().save(run / "config.toml")
    writer = EventWriter(run)
    for e in events + resumed + rest:
        writer.emit(e)
    info = run_info(run)
    assert progress.elapsed(now=9e18) == info.duration_s == 66.0
    proc = run_cli("runs", runs_root=tmp_path / "runs")
    assert "1:06" in proc.stdout, proc.stdout
    assert load_series(run).duration_s == 66.0


def test_an_unknown_command_is_one_line_that_names_the_close_one_and_all(tmp_path: Path) -> None:
    proc = run_cli("rnus", runs_root=tmp_path / "runs")
    line = assert_user_error(proc, "no command 'rnus'", "did you mean 'runs'?", "train", "attach")
    assert "finetune-tui runs" in line
    proc = run_cli("list", runs_root=tmp_path / "runs")
    assert_user_error(proc, "no command 'list'", "list the runs with 'finetune-tui runs'")
