"""The CLI side of a new user's first hour (issue 21): refusals up front, clean messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.checks import check_model_task, not_a_decoder
from engine.config import RunConfig
from engine.errors import UserError
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
    from engine import queue

    root = tmp_path / "runs"
    proc = run_cli("train", "--task", "causal-lm", "--max_steps", "2", runs_root=root)
    assert_user_error(proc, "decoder-only", "classification")
    assert not run_dirs(root)
    cfg = RunConfig()
    cfg.task = "causal-lm"
    with pytest.raises(UserError):
        queue.add(root, cfg)
    assert not queue.entries(root)
