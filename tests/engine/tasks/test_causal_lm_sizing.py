"""causal-lm at real sizes: max_length from the data, auto checkpointing, preflight on dropped rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import RunConfig
from tests.tiny_lm import make_tiny_decoder


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_decoder(tmp_path_factory.mktemp("llama") / "m", "llama")


def _tokenizer(folder: Path):
    from transformers import AutoTokenizer

    from engine.tasks.causal_lm.template import ensure_chat_template

    tok = AutoTokenizer.from_pretrained(folder)
    ensure_chat_template(tok)
    return tok


def _chats_of_lengths(tok, lengths: list[int]):
    """Chats whose encoded length is exactly each of `lengths` (answers of repeated words)."""
    from engine.tasks.causal_lm.encoding import encode_chats
    from engine.tasks.causal_lm.formats import normalise_all

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    word = next(w for w in (" the", " a", " is", " this", " ?") if count(w * 7) == 7)
    base, _ = normalise_all([{"prompt": "tell me", "completion": word}], ["prompt", "completion"])
    one = len(encode_chats(tok, base, 4096)[0][0]["input_ids"])
    rows = [{"prompt": "tell me", "completion": word * (n - one + 1)} for n in lengths]
    chats, _ = normalise_all(rows, ["prompt", "completion"])
    data, _ = encode_chats(tok, chats, 4096)
    assert [len(data[i]["input_ids"]) for i in range(len(data))] == lengths
    return chats, rows


def test_auto_max_length_is_the_99th_percentile_rounded_to_8(llama: Path) -> None:
    from engine.tasks.causal_lm.sizing import auto_max_length

    tok = _tokenizer(llama)
    lengths = [20] * 90 + [41] * 9 + [200]  # the 99th of 100 is the 99th smallest: 41
    chats, _ = _chats_of_lengths(tok, lengths)
    assert auto_max_length(tok, chats, positions=256) == 48
    assert auto_max_length(tok, chats, positions=32) == 32  # capped by the model's positions
    assert auto_max_length(tok, chats[:90], positions=256) == 24


def test_auto_max_length_is_logged_and_used_by_the_encoder(llama: Path, tmp_path: Path) -> None:
    from engine.tasks import get_task

    tok = _tokenizer(llama)
    _, rows = _chats_of_lengths(tok, [30] * 99 + [120])
    data_file = tmp_path / "d.jsonl"
    data_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = RunConfig(task="causal-lm")
    cfg.model.model_name, cfg.data.data_file_path = str(llama), str(data_file)
    cfg.data.validation_fraction = 0
    assert cfg.model.max_length == 0  # the default is auto
    task = get_task("causal-lm")
    data = task.prepare_data(cfg, None)
    loaded = task.load_model(cfg, data, "fp32")
    assert loaded.max_length == 32
    assert any("max_length auto: 32 tokens" in n for n in loaded.notes)
    encoded = task.encode(cfg, data, loaded.tokenizer, None)
    assert max(encoded.train.lengths()) == 32
    assert any("cut to max_length=32" in n for n in encoded.notes)


def test_auto_checkpointing_turns_on_when_the_estimate_exceeds_free_ram() -> None:
    from engine.tasks.causal_lm.memory import decide_checkpointing

    gb = 1024**3

    class Est:
        def __init__(self, total: float) -> None:
            self.total = int(total)

    def small(on: bool) -> Est:
        return Est(1 * gb if on else 1.5 * gb)

    def big(on: bool) -> Est:
        return Est(2.5 * gb if on else 9 * gb)

    # Within the 2 GB a step may always take, and within half the free RAM: off.
    assert decide_checkpointing("auto", small, free_bytes=20 * gb) == (False, "")
    # The same step on a machine with 2 GB free: on.
    on, why = decide_checkpointing("auto", small, free_bytes=2 * gb)
    assert on and "1.5 GB" in why and "half the 2.0 GB free" in why
    # A step over the bound by design (the longest batch checkpointed, 2.5 GB) is checkpointed
    # even where the RAM would hold it.
    on, why = decide_checkpointing("auto", big, free_bytes=100 * gb)
    assert on and "9.0 GB" in why and "the 2.5 GB a step may take" in why
    assert decide_checkpointing("false", big, free_bytes=1 * gb) == (False, "")
    assert decide_checkpointing(True, small, free_bytes=100 * gb) == (True, "")


def test_auto_checkpointing_on_a_loaded_model(llama: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.tasks.causal_lm.modeling import load_causal_model

    cfg = RunConfig(task="causal-lm")
    cfg.model.model_name, cfg.model.max_length = str(llama), 64
    monkeypatch.setattr("engine.core.hardware.free_memory_bytes", lambda: 10 * 1024**2)
    loaded = load_causal_model(cfg, "fp32")
    assert loaded.model.get_base_model().is_gradient_checkpointing
    assert any("gradient checkpointing on (auto)" in n for n in loaded.notes)
    monkeypatch.setattr("engine.core.hardware.free_memory_bytes", lambda: 64 * 1024**3)
    loaded = load_causal_model(cfg, "fp32")
    assert not loaded.model.get_base_model().is_gradient_checkpointing
    assert loaded.notes == []


def test_old_configs_keep_their_checkpointing_switch() -> None:
    for raw, expected in ((True, "true"), (False, "false"), ("auto", "auto"), ("on", "true")):
        cfg = RunConfig.from_dict({"training": {"gradient_checkpointing": raw}})
        assert cfg.training.gradient_checkpointing == expected
        assert cfg.problems() == {}


def test_preflight_with_rows_dropped_as_too_long(llama: Path, tmp_path: Path) -> None:
    """It ended in IndexError when the encoder dropped rows whose prompt fills max_length."""
    from engine.training.preflight import preflight

    long, short = "tell me about this review " * 30, "tell me about this review"
    rows = [{"prompt": long if i % 3 == 0 else short, "completion": "ok"} for i in range(24)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = RunConfig(task="causal-lm")
    cfg.model.model_name, cfg.data.data_file_path = str(llama), str(data)
    cfg.model.max_length, cfg.training.batch_size, cfg.training.precision = 64, 4, "fp32"
    report = preflight(cfg.validate(), steps=3)
    assert report.seconds_per_step > 0
    assert any(line.startswith("memory estimate") for line in report.lines())


def test_the_checkpointing_flag_alone_still_means_true() -> None:
    from engine.cli.config_flags import config_from_args
    from engine.cli.parser import build_parser

    for argv, expected in (
        (["train", "--gradient_checkpointing"], "true"),
        (["train", "--gradient_checkpointing", "false"], "false"),
        (["train"], "auto"),
    ):
        cfg = config_from_args(build_parser().parse_args(argv))
        assert cfg.training.gradient_checkpointing == expected
