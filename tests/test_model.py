"""Model loading and LoRA targeting across architectures (tiny models built from configs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.errors import UserError
from engine.model import (
    check_model_source,
    choose_modules_to_save,
    choose_targets,
    load_for_training,
)


def _tiny(kind: str):
    import transformers as tf

    common = dict(vocab_size=64, num_labels=2)
    if kind == "bert":
        cfg = tf.BertConfig(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            **common,
        )
    elif kind == "distilbert":
        cfg = tf.DistilBertConfig(dim=16, n_layers=1, n_heads=2, hidden_dim=32, **common)
    elif kind == "roberta":
        cfg = tf.RobertaConfig(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            **common,
        )
    elif kind == "deberta":
        cfg = tf.DebertaV2Config(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            **common,
        )
    elif kind == "gpt2":
        cfg = tf.GPT2Config(n_embd=16, n_layer=1, n_head=2, pad_token_id=0, **common)
    elif kind == "llama":
        cfg = tf.LlamaConfig(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            intermediate_size=32,
            pad_token_id=0,
            **common,
        )
    else:  # pragma: no cover
        raise ValueError(kind)
    return tf.AutoModelForSequenceClassification.from_config(cfg)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("bert", ["query", "value"]),
        ("distilbert", ["q_lin", "v_lin"]),
        ("roberta", ["query", "value"]),
        ("deberta", ["query_proj", "value_proj"]),
        ("gpt2", ["c_attn"]),
        ("llama", ["q_proj", "v_proj"]),
    ],
)
def test_auto_targets_pick_attention_projections(kind: str, expected: list[str]) -> None:
    """`auto` finds the attention query/value projections of each architecture family."""
    assert choose_targets(_tiny(kind), "auto") == expected


def test_all_linear_excludes_the_head() -> None:
    """'all-linear' lists every linear layer name except the classifier head and pooler."""
    names = choose_targets(_tiny("bert"), "all-linear")
    assert {"query", "key", "value", "dense"} <= set(names)
    assert "classifier" not in names


def test_unknown_target_lists_existing_names() -> None:
    """A user list naming a module that does not exist is an error naming those that do."""
    with pytest.raises(UserError) as err:
        choose_targets(_tiny("distilbert"), "query,value")
    assert "query" in err.value.message
    assert "q_lin" in err.value.hint and "v_lin" in err.value.hint
    assert err.value.field == "lora.target_modules"


def test_modules_to_save_auto_trains_head_and_pooler() -> None:
    """The classifier head (and BERT's pooler) are trained in full by default."""
    assert choose_modules_to_save(_tiny("bert"), "auto") == ["classifier", "pooler"]
    assert choose_modules_to_save(_tiny("distilbert"), "auto") == ["classifier", "pre_classifier"]
    assert choose_modules_to_save(_tiny("llama"), "auto") == ["score"]


def test_pickle_only_model_is_refused(tmp_path: Path) -> None:
    """A folder with only .bin weights is refused unless pickle weights are allowed."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(UserError) as err:
        check_model_source(str(tmp_path), allow_pickle=False)
    assert "pickle" in err.value.message
    check_model_source(str(tmp_path), allow_pickle=True)


def test_missing_folder_and_bad_folder(tmp_path: Path) -> None:
    """A path that does not exist, or a folder without config.json, is a clear error."""
    with pytest.raises(UserError, match="not found"):
        check_model_source(str(tmp_path / "nope" / "model"), allow_pickle=False)
    with pytest.raises(UserError, match="config.json"):
        check_model_source(str(tmp_path), allow_pickle=False)


def test_gpt2_without_pad_token_trains_a_step(tmp_path: Path) -> None:
    """A GPT-2 style model (no pad token, Conv1D layers) gets a pad token and LoRA on its Conv1Ds."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<eos>", "good", "bad", "film", "very", "<unk>"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>")
    fast.save_pretrained(tmp_path)
    GPT2ForSequenceClassification(
        GPT2Config(vocab_size=6, n_embd=16, n_layer=1, n_head=2)
    ).save_pretrained(tmp_path, safe_serialization=True)
    cfg = RunConfig()
    cfg.model.model_name = str(tmp_path)
    cfg.training.precision = "fp32"
    loaded = load_for_training(cfg, {0: "neg", 1: "pos"}, "fp32")
    assert loaded.tokenizer.pad_token is not None
    assert {"c_attn", "c_fc", "c_proj"} <= set(loaded.target_modules)
    batch = loaded.tokenizer(["good film", "very very bad film"], padding=True, return_tensors="pt")
    out = loaded.model(**batch, labels=torch.tensor([1, 0]))
    out.loss.backward()
    assert torch.isfinite(out.loss)
