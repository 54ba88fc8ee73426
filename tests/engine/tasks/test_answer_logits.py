"""Logits only at answer positions give the stock full-logits loss and gradients (causal-lm)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import RunConfig
from tests.tiny_lm import make_tiny_decoder


def _loaded(folder: Path, precision: str, chat_tokens: bool = True):
    from engine.tasks.causal_lm.modeling import load_causal_model

    cfg = RunConfig()
    cfg.task = "causal-lm"
    cfg.model.model_name = str(folder)
    cfg.lora.train_chat_tokens = chat_tokens
    return load_causal_model(cfg, precision)


def _batch(tokenizer, seed: int = 0):
    """Three rows of different lengths: prompt positions, answers and right padding."""
    import torch

    from engine.tasks.causal_lm.collate import CausalCollator

    g = torch.Generator().manual_seed(seed)
    rows = []
    for n, prompt in ((21, 9), (14, 5), (30, 12)):
        ids = torch.randint(3, len(tokenizer), (n,), generator=g).tolist()
        rows.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return CausalCollator(tokenizer.pad_token_id, 8)(rows)


def _loss_and_grads(model, batch, precision: str, answer_path: bool, **extra):
    import torch

    base = model.get_base_model()
    if not answer_path:  # the stock forward of the model's class
        base.forward = type(base).forward.__get__(base)
    model.train()
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = model(**batch, **extra).loss
    loss.backward()
    grads = {
        n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad
    }
    return float(loss), grads


CASES = [
    ("llama", "fp32", True),  # tied head, ChatML rows trained: the checkpointed chunk path
    ("llama", "fp32", False),  # tied, plain frozen head: the fused path
    ("llama-untied", "fp32", True),
    ("gpt2", "fp32", True),
    ("qwen2", "bf16", True),
    ("llama", "bf16", False),
]


@pytest.mark.parametrize(("kind", "precision", "rows"), CASES)
def test_same_loss_and_gradients_as_the_full_logits(
    tmp_path: Path, kind: str, precision: str, rows: bool
) -> None:
    import torch

    folder = make_tiny_decoder(tmp_path / "m", kind.removesuffix("-untied"))
    if kind.endswith("-untied"):
        from transformers import AutoModelForCausalLM

        m = AutoModelForCausalLM.from_pretrained(folder)
        m.config.tie_word_embeddings = False
        m.lm_head.weight = torch.nn.Parameter(m.lm_head.weight.detach().clone() * 0.5)
        m.save_pretrained(folder)
    loaded = _loaded(folder, precision, rows)
    assert getattr(loaded.model.get_base_model(), "_answer_logits", False)
    batch = _batch(loaded.tokenizer)
    n_items = torch.tensor(int((batch["labels"][:, 1:] != -100).sum()) * 2)  # as grad_accum 2
    ours = _loss_and_grads(loaded.model, batch, precision, True, num_items_in_batch=n_items)
    stock = _loss_and_grads(loaded.model, batch, precision, False, num_items_in_batch=n_items)
    # fp32: only summation order differs. bf16: both take bf16 logits from the same hidden states
    # and reduce in fp32; the matmul's blocking differs with the row count (~1 bf16 ulp per logit).
    tol = 1e-5 if precision == "fp32" else 2e-3
    assert ours[0] == pytest.approx(stock[0], rel=tol)
    assert ours[1].keys() == stock[1].keys()
    if rows:
        assert any("trainable_tokens" in n for n in ours[1])
    for name, grad in stock[1].items():
        scale = float(grad.abs().max()) or 1.0
        diff = float((ours[1][name] - grad).abs().max())
        assert diff <= (1e-4 if precision == "fp32" else 3e-2) * scale, name


def test_evaluation_scores_without_vocabulary_wide_logits(tmp_path: Path) -> None:
    """Eval gets (argmax, nll) per position, and the metrics match the full logits' ones."""
    import torch

    from engine.tasks.causal_lm.metrics import preprocess_logits

    loaded = _loaded(make_tiny_decoder(tmp_path / "m", "llama"), "fp32")
    model, batch = loaded.model.eval(), _batch(loaded.tokenizer, seed=1)
    with torch.no_grad():
        ours = model(**batch)
        compact = preprocess_logits(ours.logits, batch["labels"])
        base = model.get_base_model()
        base.forward = type(base).forward.__get__(base)
        stock = model(**batch)
        full = preprocess_logits(stock.logits, batch["labels"])
    assert compact.shape == full.shape
    mask = batch["labels"][:, 1:] != -100
    assert torch.equal(compact[..., 0][mask], full[..., 0][mask])
    assert torch.allclose(compact[..., 1][mask], full[..., 1][mask], atol=1e-5)
    assert float(ours.loss) == pytest.approx(float(stock.loss), rel=1e-5)


def test_generation_takes_the_stock_path(tmp_path: Path) -> None:
    loaded = _loaded(make_tiny_decoder(tmp_path / "m", "llama"), "fp32")
    model = loaded.model.eval()
    ids = loaded.tokenizer("this review is", return_tensors="pt")["input_ids"]
    out = model(input_ids=ids)
    assert out.logits.shape[-1] == model.get_base_model().config.vocab_size
