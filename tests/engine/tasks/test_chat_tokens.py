"""Chat-template tokens a base model never learnt get trainable embedding rows (causal-lm)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import RunConfig
from tests.tiny_lm import ZEPHYR, make_tiny_decoder


def _cfg(model: Path) -> RunConfig:
    cfg = RunConfig()
    cfg.model.model_name = str(model)
    cfg.model.max_length = 64
    return cfg


def _tokenizer(folder: Path):
    from transformers import AutoTokenizer

    from engine.tasks.causal_lm.template import ensure_chat_template

    tok = AutoTokenizer.from_pretrained(folder)
    return tok, ensure_chat_template(tok)


def test_the_chatml_fallback_trains_its_own_tokens_not_eos(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from engine.tasks.causal_lm.chat_tokens import rows_to_train

    folder = make_tiny_decoder(tmp_path / "m", "llama")
    tok, source = _tokenizer(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert source == "chatml"
    assert rows_to_train(model, tok, source) == sorted(
        tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    )


def test_no_rows_when_the_template_uses_only_learnt_tokens(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from engine.tasks.causal_lm.chat_tokens import rows_to_train

    for name, kwargs in {
        "eos-fallback": {"chatml_tokens": False},
        "zephyr": {"template": ZEPHYR},
    }.items():
        folder = make_tiny_decoder(tmp_path / name, "llama", **kwargs)
        tok, source = _tokenizer(folder)
        model = AutoModelForCausalLM.from_pretrained(folder)
        assert rows_to_train(model, tok, source) == [], name


def test_an_all_zero_row_of_a_model_template_is_trained(tmp_path: Path) -> None:
    """Qwen2 / Llama-3 base models ship their chat tokens as zero rows."""
    import torch
    from transformers import AutoModelForCausalLM

    from engine.tasks.causal_lm.chat_tokens import rows_to_train
    from engine.tasks.causal_lm.template import chatml_template

    folder = make_tiny_decoder(tmp_path / "m", "llama", template=chatml_template())
    tok, source = _tokenizer(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert source == "model"
    assert rows_to_train(model, tok, source) == []
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    with torch.no_grad():
        model.get_input_embeddings().weight[im_end] = 0
    assert rows_to_train(model, tok, source) == [im_end]


@pytest.mark.parametrize("kind", ["llama", "gpt2", "untied", "bf16"])
def test_rows_train_and_merge_for_tied_and_untied_heads(tmp_path: Path, kind: str) -> None:
    import torch

    from engine.tasks.causal_lm.modeling import load_causal_model

    folder = make_tiny_decoder(tmp_path / kind, "gpt2" if kind == "gpt2" else "llama")
    if kind == "untied":
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(folder, tie_word_embeddings=False)
        base.config.tie_word_embeddings = False
        base.save_pretrained(folder, safe_serialization=True)
    precision = "bf16" if kind == "bf16" else "fp32"
    loaded = load_causal_model(_cfg(folder), precision)
    model, tok = loaded.model, loaded.tokenizer
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    assert loaded.modules_to_save == ["embedding rows of <|im_start|>, <|im_end|>"]
    rows = [p for n, p in model.named_parameters() if "trainable_tokens_delta" in n]
    assert len(rows) == (2 if kind == "untied" else 1)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    ids = torch.tensor([[5, 6, 7, im_end, 8]])
    before = model.get_output_embeddings().weight[im_end].detach().clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(3):
        with autocast:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert all(float(p.detach().abs().sum()) > 0 for p in rows)
    model.eval()
    with torch.no_grad(), autocast:
        live = model(input_ids=ids).logits.float()
        merged = model.merge_and_unload()
        after = merged(input_ids=ids).logits.float()
    tolerance = 5e-2 if precision == "bf16" else 1e-4
    torch.testing.assert_close(after, live, rtol=tolerance, atol=tolerance)
    changed = merged.get_output_embeddings().weight[im_end].float() - before.float()
    assert float(changed.abs().max()) > 1e-3


def test_the_switch_turns_the_rows_off(tmp_path: Path) -> None:
    from engine.tasks.causal_lm.modeling import load_causal_model

    cfg = _cfg(make_tiny_decoder(tmp_path / "m", "llama"))
    cfg.lora.train_chat_tokens = False
    loaded = load_causal_model(cfg, "bf16")
    assert loaded.modules_to_save == []
    assert all("lora_" in n for n, p in loaded.model.named_parameters() if p.requires_grad)
