"""Each speed path gives the plain path's numbers: fused LoRA in fp32, backward stopped below LoRA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.config import RunConfig
from tests.lora_helpers import load_seeded

TEXTS = ["a good film", "a very bad film indeed", "not bad", "dull"]


def _load(tiny_model: Path, fuse: bool = True, **settings: Any) -> Any:
    """The tiny model with LoRA in fp32 (every layer unless said otherwise), seeded."""
    return load_seeded(tiny_model, "fp32", fuse, **settings)


def _train_losses(loaded: Any, steps: int = 4) -> tuple[list[float], dict[str, Any]]:
    """Losses of a few fp32 AdamW steps on a fixed batch, and the last step's gradients."""
    import torch

    model, tok = loaded.model.train(), loaded.tokenizer
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    labels = torch.tensor([1, 0, 1, 0])
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses, grads = [], {}
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        optim.step()
        optim.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    return losses, grads


def test_fused_lora_in_fp32_matches_peft(tiny_model: Path) -> None:
    """fp32 fused LoRA layers: peft's losses over 4 training steps to 1e-5, gradients to 1e-4."""
    import torch

    from engine.models.fused_lora import fuse_lora_layers

    plain = _load(tiny_model, fuse=False)
    fused = _load(tiny_model)
    fuse_lora_layers(fused.model)  # training fuses only in bf16; the layer works in fp32 too
    assert sum(m.forward.__name__ == "_fused_forward" for m in fused.model.modules()) > 0
    losses_p, grads_p = _train_losses(plain)
    losses_f, grads_f = _train_losses(fused)
    assert losses_f == pytest.approx(losses_p, rel=1e-5)
    assert len(set(losses_p)) == len(losses_p)  # the steps did change the weights
    assert grads_f.keys() == grads_p.keys()
    for name in grads_p:
        assert torch.allclose(grads_f[name], grads_p[name], rtol=1e-4, atol=1e-7), name


def test_lora_on_top_layers_stops_backward_below_them(tiny_model: Path) -> None:
    """lora_layers=0.5: LoRA only in the last layer, no backward below it, the same numbers."""
    import torch

    loaded = _load(tiny_model, lora_layers=0.5)
    names = [n for n, p in loaded.model.named_parameters() if p.requires_grad and "lora_" in n]
    assert names and all(".layer.1." in n for n in names)
    bert = loaded.model.base_model.model.bert
    reached: list[str] = []
    for i, layer in enumerate(bert.encoder.layer):
        layer.register_full_backward_hook(lambda *a, i=i: reached.append(f"layer {i}"))
    losses, grads = _train_losses(loaded, steps=1)
    assert reached == ["layer 1"]  # autograd never went into layer 0 (nor the embeddings)

    # The same model with backward forced all the way down (inputs requiring grad): same numbers.
    forced = _load(tiny_model, lora_layers=0.5)
    forced.model.enable_input_require_grads()
    losses_f, grads_f = _train_losses(forced, steps=1)
    assert losses_f == losses
    for name in grads:
        assert torch.allclose(grads_f[name], grads[name], rtol=1e-5, atol=1e-8), name


def test_lora_layers_1_adapts_every_layer(tiny_model: Path) -> None:
    """lora_layers=1 means every layer; a small share still adapts the top one."""
    loaded = _load(tiny_model, lora_layers=0.1)
    names = [n for n, _ in loaded.model.named_parameters() if "lora_A" in n]
    assert names and all(".layer.1." in n for n in names)
    for top in (1.0,):
        loaded = _load(tiny_model, lora_layers=top)
        names = [n for n, _ in loaded.model.named_parameters() if "lora_A" in n]
        assert any(".layer.0." in n for n in names) and any(".layer.1." in n for n in names)


def test_auto_lora_layers_follow_the_data_size(tiny_model: Path) -> None:
    """lora_layers=0 (the default): the top third below 10,000 rows, the top half below 50,000,
    every layer from there."""
    from types import SimpleNamespace

    from engine.models.lora import (
        AUTO_EVERY_LAYER_FROM_ROWS,
        AUTO_HALF_FROM_ROWS,
        effective_lora_layers,
        top_layer_indices,
    )
    from engine.tasks.base import TaskData
    from engine.tasks.classification import ClassificationTask

    assert effective_lora_layers(0.0, 2_000) == pytest.approx(1 / 3)
    assert effective_lora_layers(0.0, AUTO_HALF_FROM_ROWS - 1) == pytest.approx(1 / 3)
    assert effective_lora_layers(0.0, AUTO_HALF_FROM_ROWS) == 0.5
    assert effective_lora_layers(0.0, 20_000) == 0.5
    assert effective_lora_layers(0.0, AUTO_EVERY_LAYER_FROM_ROWS - 1) == 0.5
    assert effective_lora_layers(0.0, AUTO_EVERY_LAYER_FROM_ROWS) == 1.0
    assert effective_lora_layers(0.5, 1_000_000) == 0.5  # a setting is kept
    six = SimpleNamespace(config=SimpleNamespace(num_hidden_layers=6))  # MiniLM-L6's depth
    picked = {rows: top_layer_indices(six, effective_lora_layers(0.0, rows)) for rows in
              (2_000, 20_000, 67_349)}  # fmt: skip
    assert picked == {2_000: [4, 5], 20_000: [3, 4, 5], 67_349: None}
    cfg = RunConfig()
    cfg.model.model_name = str(tiny_model)
    assert cfg.lora.lora_layers == 0.0
    for rows, layers in ((2_000, {"1"}), (AUTO_EVERY_LAYER_FROM_ROWS, {"0", "1"})):
        splits = SimpleNamespace(train_texts=["x"] * rows)
        data = TaskData([], None, "none", {"id2label": {0: "neg", 1: "pos"}, "splits": splits})
        loaded = ClassificationTask().load_model(cfg, data, "fp32")
        adapted = {n.split(".layer.")[1].split(".")[0] for n, _ in loaded.model.named_parameters()
                   if "lora_A" in n}  # fmt: skip
        assert adapted == layers, rows
        assert loaded.lora_layers == ("every layer" if len(layers) == 2 else "top 1 of 2 layers")


def test_padding_to_the_longest_text_gives_the_padded_to_8_numbers(tiny_model: Path) -> None:
    """In fp32 the collator pads each batch to its longest text only (bf16: multiples of 8), and
    the loss and gradients are those of padding to multiples of 8 (the mask hides pads)."""
    import torch
    from transformers import DataCollatorWithPadding

    from engine.tasks.classification import ClassificationTask

    loaded = _load(tiny_model)
    tok = loaded.tokenizer
    rows = [dict(tok(t), labels=y) for t, y in zip(TEXTS, [1, 0, 1, 0], strict=True)]
    cfg = RunConfig()
    cfg.training.precision = "bf16"
    assert ClassificationTask().collator(cfg, tok)(rows)["input_ids"].shape[1] % 8 == 0
    cfg.training.precision = "fp32"
    exact = ClassificationTask().collator(cfg, tok)(rows)
    longest = max(len(r["input_ids"]) for r in rows)
    assert exact["input_ids"].shape[1] == longest and longest % 8
    padded8 = DataCollatorWithPadding(tok, pad_to_multiple_of=8)(rows)
    assert padded8["input_ids"].shape[1] % 8 == 0
    results = []
    for batch in (exact, padded8):
        loaded.model.zero_grad(set_to_none=True)
        loss = loaded.model.train()(**batch).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in loaded.model.named_parameters() if p.requires_grad}
        results.append((float(loss.detach()), grads))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    for name, grad in results[0][1].items():
        assert torch.allclose(grad, results[1][1][name], rtol=1e-4, atol=1e-7), name


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("lora_layers", [0.5, 1.0])
def test_last_layer_on_the_first_token_gives_the_full_layers_numbers(
    tiny_model: Path, attention: str, lora_layers: float
) -> None:
    """The last layer computed for [CLS] only: the full layer's losses over 4 fp32 training steps
    and gradients, to fp32 rounding (the same sums in other matmul shapes; padded batch)."""
    import torch

    from engine.tasks import classification

    classification.FIRST_TOKEN_ONLY = False
    try:
        full = _load(tiny_model, lora_layers=lora_layers, attention=attention)
    finally:
        classification.FIRST_TOKEN_ONLY = True
    first = _load(tiny_model, lora_layers=lora_layers, attention=attention)
    layers = first.model.base_model.model.bert.encoder.layer
    assert layers[-1].forward.__name__ == "_first_token_forward"
    assert full.model.base_model.model.bert.encoder.layer[-1].forward.__name__ == "forward"
    losses_full, grads_full = _train_losses(full)
    losses_first, grads_first = _train_losses(first)
    # fp32 carries ~7 digits; the two paths add the same products in other orders over at most
    # a few hundred terms, so they agree to ~1e-6 relative: 1e-5 leaves a margin, and the losses
    # change by far more than that from step to step.
    assert losses_first == pytest.approx(losses_full, rel=1e-5)
    assert len(set(losses_full)) == len(losses_full)
    assert grads_first.keys() == grads_full.keys()
    for name in grads_full:
        assert torch.allclose(grads_first[name], grads_full[name], rtol=1e-4, atol=1e-6), name


def test_last_layer_on_the_first_token_only_where_the_head_reads_it(tmp_path: Path) -> None:
    """A decoder-style model (GPT-2: its head reads the last token) keeps its last layer whole."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from engine.models.first_token import last_layer_first_token_only

    config = GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=50, n_positions=32)
    assert not last_layer_first_token_only(GPT2ForSequenceClassification(config))
