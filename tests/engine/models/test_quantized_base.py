"""A quantised frozen base (int8 / int4) under LoRA: the layer's numbers, the loss and LoRA
gradients against fp32, base_precision's checks and auto choice, and a run whose adapter is
plain peft and merges onto the original weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import RunConfig
from tests.cli_helpers import train_in_process
from tests.tiny_lm import make_tiny_decoder

# Loss of the tiny decoder with its base in int8 / int4 against fp32 (random weights, ~6.0):
# measured 2e-5 (int8) and 4e-4 (int4); the bounds leave room for other seeds.
LOSS_TOLERANCE = {"int8": 2e-3, "int4": 2e-2}


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_decoder(tmp_path_factory.mktemp("dec") / "tiny-llama", "llama")


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_quantising_in_blocks_of_rows_stores_what_one_piece_does(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from engine.models import quantized

    torch.manual_seed(0)
    weight = torch.randn(50, 128)
    whole = quantized.quant_linear_class()(128, 50, False, kind)
    whole.set_weight(weight)
    monkeypatch.setattr(quantized, "SET_WEIGHT_ELEMENTS", 128 * 7)  # 7 rows a block, 8 blocks
    blocks = quantized.quant_linear_class()(128, 50, False, kind)
    blocks.set_weight(weight)
    assert torch.equal(blocks.weight, whole.weight) and torch.equal(blocks.scale, whole.scale)


@pytest.mark.parametrize("blocks", [1, 43])
@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_a_quantised_output_head_gives_the_answer_loss_of_its_dequantised_weights(
    kind: str, blocks: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer-logits path scores a quantised head a block of vocabulary at a time (an online
    log-sum-exp), with the loss, gradient and argmax of its dequantised plain head."""
    import torch

    from engine.models.quantized import quant_linear_class
    from engine.tasks.causal_lm import answer_logits
    from engine.tasks.causal_lm.answer_logits import answer_scores, answer_token_nll

    if blocks > 1:  # 7 vocabulary rows a block: 43 blocks, the last one short
        monkeypatch.setattr(answer_logits, "CHUNK_ELEMENTS", 7 * 64)
        monkeypatch.setattr(answer_logits, "_vocab_blocks", lambda head, n: 7)

    torch.manual_seed(0)
    head = quant_linear_class()(64, 300, False, kind)
    head.set_weight(torch.randn(300, 64) * 0.1)
    plain = torch.nn.Linear(64, 300, bias=False)
    plain.weight = torch.nn.Parameter(head.dequantized(torch.float32), requires_grad=False)
    hidden = torch.randn(40, 64)
    targets = torch.randint(0, 300, (40,))

    def whole_forward(*args: object) -> None:
        raise AssertionError("the head's own forward dequantises it chunk by chunk")

    head.forward = whole_forward  # type: ignore[method-assign]
    h1, h2 = hidden.clone().requires_grad_(True), hidden.clone().requires_grad_(True)
    quant_nll, plain_nll = answer_token_nll(head, h1, targets), answer_token_nll(plain, h2, targets)
    assert torch.allclose(quant_nll, plain_nll, atol=1e-5)
    weights = torch.rand(40)
    (quant_nll * weights).sum().backward()
    (plain_nll * weights).sum().backward()
    assert torch.allclose(h1.grad, h2.grad, atol=1e-5)
    total, preds, nll = answer_scores(head, hidden, targets)
    assert torch.allclose(nll, plain_nll.detach(), atol=1e-5)
    assert torch.equal(preds, (hidden @ plain.weight.t()).argmax(-1))


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_quant_linear_input_gradient_is_the_dequantised_weights(kind: str) -> None:
    import torch

    from engine.models.quantized import quant_linear_class

    torch.manual_seed(0)
    full = torch.nn.Linear(128, 48)
    layer = quant_linear_class()(128, 48, True, kind)
    layer.set_weight(full.weight)
    layer.bias = torch.nn.Parameter(full.bias.detach().clone(), requires_grad=False)
    weight = layer.dequantized(torch.float32)
    err = (weight - full.weight).abs().max() / full.weight.abs().max()
    assert 0 < err < (0.01 if kind == "int8" else 0.1)  # really quantised, and close
    x = torch.randn(5, 7, 128, requires_grad=True)
    g = torch.randn(5, 7, 48)
    layer(x).backward(g)
    ref = x.detach().clone().requires_grad_(True)
    out = torch.nn.functional.linear(ref, weight, layer.bias)
    out.backward(g)
    assert torch.allclose(layer(x), out, atol=1e-5)
    assert torch.allclose(x.grad, ref.grad, atol=1e-5)
    assert layer.weight.grad is None


def _loss_and_lora_grads(folder: Path, base: str) -> tuple[float, dict]:
    import torch

    from engine.tasks.causal_lm.modeling import load_causal_model

    cfg = RunConfig()
    cfg.model.model_name = str(folder)
    cfg.model.max_length = 64
    cfg.model.base_precision = base
    cfg.training.gradient_checkpointing = "false"
    torch.manual_seed(1)
    loaded = load_causal_model(cfg, "fp32")
    model = loaded.model
    for name, param in model.named_parameters():
        if "lora_B" in name:  # B starts at zero; a non-zero B makes A's gradient non-zero too
            torch.nn.init.normal_(param, std=0.05)
    torch.manual_seed(2)
    ids = torch.randint(3, 300, (3, 40))
    model.train()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = {n: p.grad.flatten() for n, p in model.named_parameters() if p.requires_grad}
    return float(loss.detach()), grads


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_quantised_base_gives_the_fp32_loss_and_lora_gradients(llama: Path, kind: str) -> None:
    import torch

    loss, grads = _loss_and_lora_grads(llama, "fp32")
    q_loss, q_grads = _loss_and_lora_grads(llama, kind)
    assert abs(q_loss - loss) < LOSS_TOLERANCE[kind]
    assert q_grads.keys() == grads.keys() and any("lora_A" in n for n in grads)
    flat = torch.cat([grads[n] for n in grads])
    q_flat = torch.cat([q_grads[n] for n in grads])
    assert torch.nn.functional.cosine_similarity(flat, q_flat, dim=0) > 0.99
    for name in grads:
        cos = torch.nn.functional.cosine_similarity(grads[name], q_grads[name], dim=0)
        assert cos > 0.95, name


def test_quantised_base_holds_its_linears_in_int8(llama: Path) -> None:
    import torch

    from engine.models.quantized import is_quant_linear
    from engine.tasks.causal_lm.modeling import load_causal_model

    cfg = RunConfig()
    cfg.model.model_name = str(llama)
    cfg.model.base_precision = "int8"
    loaded = load_causal_model(cfg, "fp32")
    base = loaded.model.get_base_model()
    quant = [m for m in base.modules() if is_quant_linear(m)]
    assert len(quant) == 14  # 7 projections x 2 layers; the tied head stays
    assert all(m.weight.dtype == torch.int8 for m in quant)
    assert "base weights in int8 (as set)" in loaded.notes


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"base_precision": "int3"}, "model.base_precision", "must be one of"),
        ({"base_precision": "int8", "task": "classification"}, "model.base_precision", "causal"),
        ({"base_precision": "bf16", "precision": "fp32"}, "model.base_precision", "bf16"),
        ({"base_precision": "fp32", "precision": "bf16"}, "model.base_precision", "bf16"),
    ],
)
def test_base_precision_problems(changes: dict, field: str, words: str) -> None:
    cfg = RunConfig()
    cfg.task = changes.pop("task", "causal-lm")
    cfg.model.base_precision = changes.pop("base_precision")
    if "precision" in changes:
        cfg.training.precision = changes.pop("precision")
    from engine.config.validation import config_problems

    assert words in config_problems(cfg)[field]


def test_bf16_base_refused_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.core.errors import UserError
    from engine.core.hardware import resolve_precision

    monkeypatch.setattr("engine.core.hardware.native_bf16", lambda: False)
    with pytest.raises(UserError, match="no native bf16"):
        resolve_precision("auto", "bf16")
    assert resolve_precision("auto", "int8") == "fp32"
    assert resolve_precision("auto", "fp32") == "fp32"


def test_auto_base_precision_takes_full_precision_when_it_fits_else_int8_else_int4() -> None:
    from engine.tasks.causal_lm.base_precision import choose_base_precision

    gb = 1024**3
    need = {"fp32": 20 * gb, "int8": 7 * gb, "int4": 4 * gb}
    base, why = choose_base_precision("auto", "fp32", need.__getitem__, free_bytes=48 * gb)
    assert (base, why) == ("fp32", "")
    base, why = choose_base_precision("auto", "fp32", need.__getitem__, free_bytes=22 * gb)
    assert base == "int8" and "fp32 weights" in why and "about 7.0 GB" in why
    base, _ = choose_base_precision("auto", "fp32", need.__getitem__, free_bytes=10 * gb)
    assert base == "int4"
    assert choose_base_precision("int8", "fp32", need.__getitem__, 1)[0] == "int8"


def test_fits_line_grows_with_free_memory_and_bits() -> None:
    from engine.tasks.causal_lm.base_precision import fits_line, largest_models

    gb = 1024**3
    found = largest_models(22 * gb)
    assert found["fp32"] < found["int8"] < found["int4"]
    assert 2 < found["fp32"] < 3.5 and 7 < found["int8"] < 10
    assert largest_models(44 * gb)["int8"] > 2 * found["int8"]
    assert fits_line(22 * gb).startswith("fits here (22 GB free")


def test_weight_split_counts_int8_at_a_quarter_of_fp32(llama: Path) -> None:
    from engine.models.loading import load_model_config
    from engine.tasks.causal_lm.base_precision import weight_split

    split = weight_split(load_model_config(str(llama)))
    assert split.quantisable == 2 * (32 * 32 * 2 + 32 * 16 * 2 + 32 * 64 * 3)
    assert split.bytes_for("fp32") == 4 * (split.quantisable + split.other)
    assert split.int8_bytes < split.quantisable * 1.2  # scales: 4 bytes per row of 32
    assert split.int4_bytes < split.quantisable * 0.75


def _rows(n: int = 24) -> list[dict]:
    reviews = ["a great film", "dull and slow", "fine acting", "awful plot"]
    return [
        {
            "prompt": f"Is this review positive or negative? {reviews[i % 4]}",
            "completion": "positive" if i % 2 == 0 else "negative",
        }
        for i in range(n)
    ]


@pytest.mark.slow
def test_int8_run_saves_a_plain_adapter_that_merges_onto_the_original(
    llama: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from engine.cli.commands import main
    from engine.rundir.events import read_events

    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows()), encoding="utf-8")
    root = tmp_path / "runs"
    run_dir = train_in_process(
        root, llama, data, "--base_precision", "int8", "--max_steps", "3", "--batch_size", "4",
        "--precision", "fp32", "--learning_rate", "0.05", "--eval_strategy", "no",
        "--save_strategy", "no", "--logging_steps", "1",
    )  # fmt: skip
    events = read_events(run_dir)
    assert events[-1].type == "finished"
    assert "base weights in int8 (as set)" in capsys.readouterr().out
    adapter = next(p.parent for p in run_dir.rglob("adapter_config.json"))
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(llama)
    assert config["peft_type"] == "LORA"
    original = AutoModelForCausalLM.from_pretrained(llama, dtype=torch.float32)
    expected = PeftModel.from_pretrained(original, adapter).merge_and_unload()
    merged = tmp_path / "merged"
    assert main(["--runs-root", str(root), "export", run_dir.name, "--merged", str(merged)]) == 0
    exported = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)
    want = expected.state_dict()
    for name, value in exported.state_dict().items():
        assert torch.equal(value, want[name]), name
    lora_b = [v for k, v in PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(llama), adapter
    ).state_dict().items() if "lora_B" in k]  # fmt: skip
    assert any(v.abs().sum() > 0 for v in lora_b)  # the adapter really trained
    from engine.models.quantized import is_quant_linear
    from engine.tasks.causal_lm.modeling import load_generator

    chat, tok = load_generator(adapter, quantised=True)  # try-it: the base as it trained
    assert any(is_quant_linear(m) for m in chat.modules())
    ids = tok("Is this review positive or negative?", return_tensors="pt").input_ids
    assert chat.generate(ids, max_new_tokens=3, do_sample=False).shape[1] > ids.shape[1]
