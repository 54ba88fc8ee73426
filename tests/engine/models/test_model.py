"""Model loading and LoRA targeting across architectures (tiny models built from configs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.config import RunConfig
from engine.core.errors import UserError
from engine.models.loading import check_model_source
from engine.models.lora import choose_modules_to_save, choose_targets
from tests.lora_helpers import classifier_for_training, load_seeded


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
    loaded = classifier_for_training(cfg, "fp32")
    assert loaded.tokenizer.pad_token is not None
    assert {"c_attn", "c_fc", "c_proj"} <= set(loaded.target_modules)
    batch = loaded.tokenizer(["good film", "very very bad film"], padding=True, return_tensors="pt")
    out = loaded.model(**batch, labels=torch.tensor([1, 0]))
    out.loss.backward()
    assert torch.isfinite(out.loss)


def _loss_and_grads(model: Any, tokenizer: Any, train: bool = True) -> tuple[Any, dict, dict]:
    """One bf16-autocast forward/backward on a fixed batch."""
    import torch

    model.train(train)
    batch = tokenizer(["a good film", "a very bad film indeed"], padding=True, return_tensors="pt")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(**batch, labels=torch.tensor([1, 0])).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads, {n: p.dtype for n, p in model.named_parameters()}


def test_bf16_storage_of_frozen_layers_changes_no_numbers(tiny_model: Path) -> None:
    """Frozen linears kept in bf16 (and no peft input casts) give autocast's loss and gradients."""
    import torch

    plain = load_seeded(tiny_model, "fp32", fuse=False)  # every weight fp32, peft's forward
    stored = load_seeded(tiny_model, "bf16", fuse=False)
    loss32, grads32, _ = _loss_and_grads(plain.model, plain.tokenizer)
    loss16, grads16, dtypes16 = _loss_and_grads(stored.model, stored.tokenizer)
    assert torch.equal(loss16, loss32)
    assert grads16.keys() == grads32.keys()
    for name in grads16:
        assert torch.allclose(grads16[name], grads32[name], rtol=1e-3, atol=1e-6), name
    assert all(dt == torch.float32 for n, dt in dtypes16.items() if "lora_" in n)
    frozen = [dt for n, dt in dtypes16.items() if n.endswith("key.base_layer.weight")]
    assert frozen and all(dt == torch.bfloat16 for dt in frozen)


def test_fused_lora_matches_peft(tiny_model: Path) -> None:
    """The fused LoRA layers give peft's loss and gradients (to bf16 rounding); eval is peft's own."""
    import torch

    plain = load_seeded(tiny_model, "bf16", fuse=False)
    fused = load_seeded(tiny_model, "bf16")
    assert sum(m.forward.__name__ == "_fused_forward" for m in fused.model.modules()) > 0
    loss_p, grads_p, _ = _loss_and_grads(plain.model, plain.tokenizer)
    loss_f, grads_f, _ = _loss_and_grads(fused.model, fused.tokenizer)
    assert torch.allclose(loss_f, loss_p, rtol=1e-2)
    lora_grads = [n for n in grads_p if "lora_A" in n or "lora_B" in n]
    assert lora_grads and all(grads_f[n].abs().sum() > 0 for n in lora_grads)
    for name in grads_p:
        cos = torch.nn.functional.cosine_similarity(
            grads_f[name].flatten().float(), grads_p[name].flatten().float(), dim=0
        )
        assert cos > 0.85, (name, float(cos))  # bf16 noise of a tiny random model; math below
    # eval mode (and so every prediction) goes through peft's forward: identical numbers
    eval_p, _, _ = _loss_and_grads(plain.model, plain.tokenizer, train=False)
    eval_f, _, _ = _loss_and_grads(fused.model, fused.tokenizer, train=False)
    assert torch.equal(eval_p, eval_f)


def test_fused_lora_backward_is_exact_in_float64() -> None:
    """gradcheck: the hand-written backward is the derivative of the forward."""
    import torch

    from engine.models.fused_lora import _function

    fn = _function()
    gen = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> Any:
        return torch.randn(*shape, dtype=torch.float64, generator=gen).requires_grad_()

    x, a, b = rand(2, 3, 5), rand(2, 5), rand(4, 2)
    weight = torch.randn(4, 5, dtype=torch.float64, generator=gen)
    bias = torch.randn(4, dtype=torch.float64, generator=gen)
    assert torch.autograd.gradcheck(lambda x, a, b: fn.apply(x, weight, bias, a, b, 0.5), (x, a, b))
    expected = x @ weight.t() + bias + 0.5 * (x @ a.t()) @ b.t()
    assert torch.allclose(fn.apply(x, weight, bias, a, b, 0.5), expected)


def test_fused_lora_steps_aside_for_dropout(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With LoRA dropout the layers take peft's path: random masks are peft's business."""
    from engine.models import fused_lora

    real = fused_lora._function()
    calls = []

    class Spy:
        @staticmethod
        def apply(*args: Any) -> Any:
            calls.append("LoraLinear")
            return real.apply(*args)

    monkeypatch.setattr(fused_lora, "_function", lambda: Spy)
    for dropout, fused_calls in ((0.0, True), (0.5, False)):
        calls.clear()
        loaded = load_seeded(tiny_model, "bf16", lora_dropout=dropout)
        _loss_and_grads(loaded.model, loaded.tokenizer)
        assert bool(calls) is fused_calls, dropout
