"""causal-lm's lean bf16 paths: GQA attention, one-Function RMSNorm, layer-by-layer checkpointing."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.config import RunConfig


def _tiny(kind: str, heads: int = 4, kv_heads: int = 2, layers: int = 2):
    import torch
    import transformers as tf

    cls = {
        "llama": (tf.LlamaConfig, tf.LlamaForCausalLM),
        "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM),
    }
    config_cls, model_cls = cls[kind]
    config = config_cls(
        vocab_size=120, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=64,
        attn_implementation="eager",
    )  # fmt: skip
    torch.manual_seed(0)
    return model_cls(config).to(torch.bfloat16)


def _loss_and_grads(model, batch) -> tuple[float, dict]:
    model.train()
    model.zero_grad(set_to_none=True)
    loss = model(**batch).loss
    loss.backward()
    grads = {n: p.grad.float().clone() for n, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


def _padded_batch():
    import torch

    torch.manual_seed(1)
    ids = torch.randint(3, 120, (3, 13))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    mask[2, :4] = 0  # left padding: a lost mask would change real tokens
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :3] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_gqa_attention_gives_eagers_loss_and_gradients(kind: str) -> None:
    from engine.models.gqa_attention import NAME, use_gqa_attention

    eager, gqa = _tiny(kind), _tiny(kind)
    assert use_gqa_attention(gqa) and gqa.config._attn_implementation == NAME
    batch = _padded_batch()
    loss_e, grads_e = _loss_and_grads(eager, batch)
    loss_g, grads_g = _loss_and_grads(gqa, batch)
    # The forward is the same arithmetic (bf16 scores, softmax accumulated in fp32 and rounded
    # to bf16); backward differs by the softmax gradient's rounding: bf16 here, fp32 in eager.
    assert loss_g == pytest.approx(loss_e, rel=1e-3)
    for name, g in grads_e.items():
        diff = (grads_g[name] - g).norm() / g.norm().clamp_min(1e-12)
        assert diff < 2e-2, name


def test_gqa_attention_only_where_eager_is_plain_and_never_in_saved_configs(tmp_path: Path) -> None:
    import transformers as tf

    from engine.models.gqa_attention import NAME, use_gqa_attention

    gpt2 = tf.GPT2LMHeadModel(tf.GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=50))
    assert not use_gqa_attention(gpt2)
    sdpa = _tiny("llama")
    sdpa.set_attn_implementation("sdpa")
    assert not use_gqa_attention(sdpa)
    model = _tiny("llama")
    assert use_gqa_attention(model)
    model.save_pretrained(tmp_path / "saved")
    assert NAME not in (tmp_path / "saved" / "config.json").read_text()


@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16"])
def test_lean_rms_norm_matches_llamas(dtype_name: str) -> None:
    import torch
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    from engine.models.lean_norm import use_lean_norms

    dtype = getattr(torch, dtype_name)
    torch.manual_seed(0)
    plain, lean = LlamaRMSNorm(48).to(dtype), LlamaRMSNorm(48).to(dtype)
    plain.weight.data = torch.randn(48).to(dtype)
    lean.weight.data = plain.weight.data.clone()
    assert use_lean_norms(lean) == 1
    x = (torch.randn(2, 5, 48) * 3).to(dtype)
    xp, xl = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn(2, 5, 48).to(dtype)
    yp, yl = plain(xp), lean(xl)
    assert torch.equal(yp, yl)
    (yp * g).sum().backward()
    (yl * g).sum().backward()
    assert torch.equal(xl.detach(), x)  # the saved input is never changed in place
    tol = 1e-5 if dtype == torch.float32 else 1e-2  # bf16: ours keeps fp32 where eager rounds
    for a, b in ((xp.grad, xl.grad), (plain.weight.grad, lean.weight.grad)):
        assert ((a.float() - b.float()).norm() / a.float().norm()) < tol


def _plan(layers: int = 10, bound: int = 1000):
    from engine.tasks.causal_lm.layer_checkpointing import LayerPlan

    blocks = [SimpleNamespace(gradient_checkpointing=True) for _ in range(layers)]
    # A checkpointed step: 200 fixed + 1 per token; one kept layer: 1 per token.
    plan = LayerPlan(blocks, bound, lambda rows, n: 200 + rows * n, lambda rows, n: rows * n)
    return plan, blocks


def test_layer_plan_checkpoints_only_what_does_not_fit_under_the_bound() -> None:
    plan, blocks = _plan(bound=200 + 8 * 100)  # the longest batch: 8 x 100 tokens
    assert plan.checkpointed_for(8, 100) == 10  # the longest checkpoints every layer
    assert plan.checkpointed_for(8, 120) == 10  # never fewer than all when over the bound
    plan.apply(4, 50)  # 200 tokens: room 600, two thirds of it for 200-byte layers: two kept
    assert plan.last == 8
    assert [b.gradient_checkpointing for b in blocks] == [True] * 8 + [False] * 2
    assert plan.bound >= 200 + 200 + 2 * 200
    plan.apply(1, 10)  # room 790 for 10-token layers: every layer kept
    assert plan.last == 0 and not any(b.gradient_checkpointing for b in blocks)


def test_layer_plan_in_a_loaded_model_follows_each_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Auto checkpointing on a tiny Llama: a long batch checkpoints every layer, a short one
    keeps the top layers, and the loss and gradients are the same either way."""
    import torch

    from engine.tasks.causal_lm.modeling import load_causal_model
    from tests.tiny_lm import make_tiny_decoder

    folder = make_tiny_decoder(tmp_path / "m", "llama")
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 4
    (folder / "config.json").write_text(json.dumps(config))
    cfg = RunConfig(task="causal-lm")
    cfg.model.model_name, cfg.model.max_length = str(folder), 64
    cfg.training.batch_size = 4
    # so little RAM would make auto quantise the base; this test is about the layer plan
    cfg.model.base_precision = "bf16"
    # (bf16 is refused on CPUs without native bf16 for its speed; here only the numbers count)
    monkeypatch.setattr("engine.core.hardware.native_bf16", lambda: True)
    monkeypatch.setattr("engine.core.hardware.free_memory_bytes", lambda: 10 * 1024**2)
    loaded = load_causal_model(cfg, "bf16")
    assert any("skips their recomputation" in n for n in loaded.notes)
    base = loaded.model.get_base_model()
    plan = base._finetune_tui_layer_plan
    assert len(plan.layers) == 4
    # Room for two layers of a 4 x 16 batch above its checkpointed estimate (with the third
    # of the room kept free for the allocator).
    plan.bound = plan.checkpointed_estimate(4, 16) + 3 * plan.layer_bytes(4, 16)
    torch.manual_seed(0)
    ids = torch.randint(3, 300, (4, 16))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    model = loaded.model.train()
    model(**batch).loss.backward()
    assert plan.last == 2
    assert [layer.gradient_checkpointing for layer in plan.layers] == [True, True, False, False]
    kept = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    plan.bound = 0  # nothing fits: every layer checkpointed, the same numbers
    model(**batch).loss.backward()
    assert plan.last == 4
    for name, grad in model.named_parameters():
        if grad.grad is not None:
            assert torch.allclose(grad.grad, kept[name], rtol=1e-4, atol=1e-6), name


def test_bf16_llama_loads_with_the_lean_paths(tmp_path: Path) -> None:
    from engine.tasks.causal_lm.modeling import GQA_LABEL, load_causal_model
    from tests.tiny_lm import make_tiny_decoder

    folder = make_tiny_decoder(tmp_path / "m", "llama")
    cfg = RunConfig(task="causal-lm")
    cfg.model.model_name, cfg.model.max_length = str(folder), 64
    loaded = load_causal_model(cfg, "bf16")
    assert loaded.attention == GQA_LABEL
    norms = [m for m in loaded.model.modules() if type(m).__name__ == "LlamaRMSNorm"]
    assert norms and all("_lean_forward" in str(m.forward) for m in norms)
    cfg.model.attention = "eager"  # a set kernel is used as set
    assert load_causal_model(cfg, "bf16").attention == "eager"


def _rows_batch():
    import torch

    torch.manual_seed(2)
    lengths = [5, 17, 9, 24, 12, 3, 20, 8]
    width = 24
    ids = torch.randint(3, 120, (len(lengths), width))
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :2] = -100
    return {"input_ids": ids * mask, "attention_mask": mask, "labels": labels}


def test_step_parts_sort_rows_and_trim_each_to_its_longest() -> None:
    import torch

    from engine.tasks.causal_lm.step_parts import split_batch

    batch = _rows_batch()
    assert split_batch(batch, part_tokens=10_000) == [batch]  # small enough: one part
    parts = split_batch(batch, part_tokens=64, multiple=1)  # 8 x 24 = 192 tokens: 3 parts
    assert len(parts) == 3
    widths = [p["input_ids"].shape[1] for p in parts]
    assert widths == sorted(widths) and widths[-1] == 24 and widths[0] < 24
    assert sum(len(p["input_ids"]) for p in parts) == 8
    kept = sorted(int(p["attention_mask"].sum()) for p in parts)
    assert sum(kept) == int(batch["attention_mask"].sum())  # no real token is cut
    left = dict(batch, attention_mask=batch["attention_mask"].flip(1))
    assert split_batch(left, part_tokens=64) == [left]  # left padding: not cut
    assert all(
        torch.equal(p["labels"] != -100, (p["labels"] != -100) & (p["attention_mask"] == 1))
        for p in parts
    )


def test_step_parts_give_the_whole_batchs_gradient() -> None:
    """Parts' losses over the whole batch's label count add up to the batch's gradient."""
    import torch

    from engine.tasks.causal_lm.step_parts import split_batch

    model = _tiny("llama")
    model.float()
    batch = _rows_batch()
    count = int((batch["labels"][:, 1:] != -100).sum())
    whole = model(**batch, num_items_in_batch=count).loss
    whole.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    total = 0.0
    for part in split_batch(batch, part_tokens=64):
        loss = model(**part, num_items_in_batch=count).loss
        loss.backward()
        total += float(loss.detach())
    assert total == pytest.approx(float(whole), rel=1e-5)
    for name, param in model.named_parameters():
        assert torch.allclose(param.grad, expected[name], rtol=1e-4, atol=1e-6), name


def test_a_training_run_in_parts_logs_the_losses_of_one_in_a_piece(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.rundir.events import read_events
    from tests.cli_helpers import train_in_process
    from tests.e2e.test_causal_lm_run import _write, chat_rows
    from tests.tiny_lm import make_tiny_decoder

    decoder = make_tiny_decoder(tmp_path / "m", "llama")
    data = _write(tmp_path / "chats.jsonl", chat_rows(16))
    flags = ["--max_steps", "3", "--batch_size", "8", "--max_length", "64", "--precision",
             "fp32", "--logging_steps", "1", "--eval_strategy", "no", "--save_strategy", "no",
             "--learning_rate", "0.02"]  # fmt: skip
    import engine.tasks.causal_lm.step_parts as step_parts

    cut, split = [], step_parts.split_batch
    monkeypatch.setattr(
        step_parts, "split_batch", lambda *a: cut.append(len(split(*a))) or split(*a)
    )
    losses = {}
    for tokens in (0, 64):  # 0: one piece; 64: parts of a few rows
        monkeypatch.setattr(step_parts, "PART_TOKENS", tokens)
        run_dir = train_in_process(tmp_path / f"runs{tokens}", decoder, data, *flags)
        losses[tokens] = [e.loss for e in read_events(run_dir) if e.type == "step" and e.loss]
    assert len(losses[0]) == 3
    assert cut and min(cut) > 1  # the second run's steps ran in parts
    assert losses[64] == pytest.approx(losses[0], rel=1e-4)
