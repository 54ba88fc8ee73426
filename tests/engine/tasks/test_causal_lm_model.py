"""Causal-LM model side: LoRA targets, collator, metrics, and the same greedy tokens from the live
model, a mid-run checkpoint, the final adapter and the merged model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.tasks.causal_lm.collate import CausalCollator
from engine.tasks.causal_lm.formats import Chat, normalise_all
from engine.tasks.causal_lm.generation import Sampling, generate_ids
from engine.tasks.causal_lm.template import IGNORE, prompt_text
from tests.tiny_lm import make_tiny_decoder

REVIEWS = ["a great film", "dull and slow", "fine acting", "awful plot", "nice story", "poor"]


def rows(n: int = 24) -> list[dict]:
    """Prompt/completion sentiment instructions."""
    return [
        {
            "prompt": f"Is this review positive or negative? {REVIEWS[i % 6]}",
            "completion": "positive" if i % 6 in (0, 2, 4) else "negative",
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_decoder(tmp_path_factory.mktemp("dec") / "tiny-llama", "llama")


def _cfg(model: Path, **training: object) -> RunConfig:
    cfg = RunConfig()
    cfg.model.model_name = str(model)
    cfg.model.max_length = 64
    for k, v in training.items():
        setattr(cfg.training, k, v)
    return cfg


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("llama", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
        ("gpt2", {"c_attn", "c_proj", "c_fc"}),
        ("qwen2", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
    ],
)
def test_auto_targets_are_attention_and_mlp_never_head(
    tmp_path: Path, kind: str, expected: set
) -> None:
    from engine.tasks.causal_lm.modeling import load_causal_model

    folder = make_tiny_decoder(tmp_path / kind, kind)
    cfg = _cfg(folder)
    cfg.lora.target_modules = "auto"
    loaded = load_causal_model(cfg, "fp32")
    assert set(loaded.target_modules) == expected
    trainable = {n: p for n, p in loaded.model.named_parameters() if p.requires_grad}
    rows = {n: p for n, p in trainable.items() if "trainable_tokens_delta" in n}
    assert trainable and all("lora_" in n for n in trainable if n not in rows)
    # Besides LoRA, only the fallback's two chat-token rows (the tied head shares them).
    assert [tuple(p.shape)[0] for p in rows.values()] == [2]
    assert not any(
        ("lm_head" in n or "embed" in n or "wte" in n) and n not in rows for n in trainable
    )


def test_collator_pads_to_the_longest_row_with_ignored_labels() -> None:
    rows = [
        {"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]},
        {"input_ids": [1] * 9, "labels": [1] * 9},
    ]
    batch = CausalCollator(pad_id=0)(rows)
    assert batch["input_ids"].shape == (2, 9)
    assert batch["labels"][0].tolist() == [IGNORE, 6, 7] + [IGNORE] * 6
    assert batch["attention_mask"][0].tolist() == [1, 1, 1] + [0] * 6


def test_collator_can_pad_to_multiples_of_eight() -> None:
    batch = CausalCollator(pad_id=0, multiple=8)(
        [
            {"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]},
            {"input_ids": [1] * 9, "labels": [1] * 9},
        ]
    )
    assert batch["input_ids"].shape == (2, 16)
    assert batch["labels"][0].tolist() == [IGNORE, 6, 7] + [IGNORE] * 13
    assert batch["attention_mask"][0].tolist() == [1, 1, 1] + [0] * 13
    assert batch["input_ids"][0, 3:].eq(0).all()


def test_metrics_from_argmax_and_label_logprobs() -> None:
    import numpy as np
    import torch

    from engine.tasks.causal_lm.metrics import compute_metrics, preprocess_logits

    logits = torch.full((1, 4, 5), -10.0)
    logits[0, 0, 2] = logits[0, 1, 3] = logits[0, 2, 0] = 10.0  # predicts 2, 3, 0
    labels = torch.tensor([[IGNORE, 2, 4, IGNORE]])  # position 0 -> 2 right, 1 -> 4 wrong
    out = preprocess_logits(logits, labels)
    assert out.shape == (1, 3, 2)

    class Pred:
        predictions = out.numpy()
        label_ids = labels.numpy()

    m = compute_metrics(Pred())
    assert m["accuracy"] == 0.5
    expected = float(
        np.mean([-torch.log_softmax(logits[0, 0], -1)[2], -torch.log_softmax(logits[0, 1], -1)[4]])
    )
    assert m["answer_loss"] == pytest.approx(expected, rel=1e-4)
    assert m["perplexity"] == pytest.approx(np.exp(expected), rel=1e-3)


def test_same_greedy_tokens_live_checkpoint_adapter_merged(llama: Path, tmp_path: Path) -> None:
    """Train 4 steps (checkpoint at 2); each saved form generates what the live model did."""
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from engine.tasks.causal_lm.encoding import encode_chats
    from engine.tasks.causal_lm.export import merged_extras, write_generation_config
    from engine.tasks.causal_lm.modeling import load_causal_model, load_generator

    cfg = _cfg(llama)
    loaded = load_causal_model(cfg, "fp32")
    tok = loaded.tokenizer
    chats, _ = normalise_all(rows(), ["prompt", "completion"])
    data, _ = encode_chats(tok, chats, 64)
    probe = [Chat(c.prompt_turns()) for c in chats[:3]]
    sampling = Sampling(max_new_tokens=10)
    live: dict[int, list[list[int]]] = {}

    class Grab(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            model.eval()
            live[state.global_step] = generate_ids(
                model, tok, [prompt_text(tok, c) for c in probe], sampling
            )
            model.train()

    args = TrainingArguments(
        output_dir=str(tmp_path / "ckpt"), per_device_train_batch_size=4, max_steps=4,
        learning_rate=5e-2, use_cpu=True, save_strategy="steps", save_steps=2,
        report_to="none", disable_tqdm=True, remove_unused_columns=False,
    )  # fmt: skip
    trainer = Trainer(
        model=loaded.model, args=args, train_dataset=data,
        data_collator=CausalCollator(tok.pad_token_id), processing_class=tok, callbacks=[Grab()],
    )  # fmt: skip
    trainer.train()
    assert live[2] != live[4]  # training moved the model between the two
    adapter = tmp_path / "adapter"
    loaded.model.save_pretrained(adapter)
    tok.save_pretrained(adapter)
    write_generation_config(adapter, tok)

    def greedy(folder: Path) -> list[list[int]]:
        model, t = load_generator(folder)
        return generate_ids(model, t, [prompt_text(t, c) for c in probe], sampling)

    assert greedy(tmp_path / "ckpt" / "checkpoint-2") == live[2]
    assert greedy(adapter) == live[4]
    model, _ = load_generator(adapter)
    merged_dir = tmp_path / "merged"
    model.merge_and_unload().save_pretrained(merged_dir, safe_serialization=True)
    tok.save_pretrained(merged_dir)
    merged_extras(merged_dir, adapter)
    assert greedy(merged_dir) == live[4]
    plain = AutoModelForCausalLM.from_pretrained(merged_dir)  # plain transformers, no peft
    assert not any("lora" in n for n, _ in plain.named_parameters())
    gen = json.loads((merged_dir / "generation_config.json").read_text())
    assert tok.convert_tokens_to_ids("<|im_end|>") in gen["eos_token_id"]
    modelfile = (merged_dir / "Modelfile").read_text()
    assert "FROM ." in modelfile
    assert (
        'TEMPLATE """{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>'
        in modelfile
    )
    assert 'PARAMETER stop "<|im_end|>"' in modelfile


def test_memory_estimate_parts() -> None:
    from transformers import Qwen2Config

    from engine.tasks.causal_lm.memory import estimate

    config = Qwen2Config(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
    )  # fmt: skip  (Qwen2.5-0.5B's shape)
    bf16 = estimate(config, 494_000_000, 4_400_000, 4, 512, "bf16", False)
    fp32 = estimate(config, 494_000_000, 4_400_000, 4, 512, "fp32", False)
    assert fp32.weights == 2 * bf16.weights == 2 * 494_000_000 * 2
    assert fp32.activations == 4 * bf16.activations
    assert bf16.lora_state == 16 * 4_400_000
    # Answer-only logits a chunk at a time: a 150k vocabulary no longer costs gigabytes.
    assert bf16.logits < 256 * 1024**2
    ckpt = estimate(config, 494_000_000, 4_400_000, 4, 512, "bf16", True)
    assert ckpt.activations < bf16.activations / 5
    assert "memory estimate" in bf16.line()


def test_preflight_reports_the_memory_estimate(llama: Path, tmp_path: Path) -> None:
    from engine.training.preflight import preflight

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows(16)))
    cfg = _cfg(llama, batch_size=4, precision="fp32")
    cfg.task = "causal-lm"
    cfg.data.data_file_path = str(data)
    report = preflight(cfg.validate(), steps=2)
    assert report.seconds_per_step > 0
    assert any(line.startswith("memory estimate") for line in report.lines())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_gradient_checkpointing_switch_trains(llama: Path, precision: str) -> None:
    import torch

    from engine.tasks.causal_lm.encoding import encode_chats
    from engine.tasks.causal_lm.modeling import load_causal_model

    cfg = _cfg(llama, gradient_checkpointing="true")
    loaded = load_causal_model(cfg, precision)
    model = loaded.model
    assert model.get_base_model().is_gradient_checkpointing
    chats, _ = normalise_all(rows(4), ["prompt", "completion"])
    data, _ = encode_chats(loaded.tokenizer, chats, 64)
    batch = CausalCollator(loaded.tokenizer.pad_token_id)([data[i] for i in range(4)])
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = model(**batch).loss
    loss.backward()
    # lora_B starts at zero, so at the first step only its gradients are non-zero
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_lora_layers_adapts_the_top_share_and_auto_is_every_layer(
    tmp_path: Path, kind: str
) -> None:
    import torch

    from engine.tasks.causal_lm.modeling import load_causal_model

    folder = make_tiny_decoder(tmp_path / kind, kind)

    def adapted(share: float) -> tuple[str, set[str]]:
        cfg = _cfg(folder)
        cfg.lora.lora_layers = share
        loaded = load_causal_model(cfg, "fp32")
        ids = torch.tensor([[5, 6, 7, 8]])
        loaded.model(input_ids=ids, labels=ids).loss.backward()
        grads = {
            n.split(".h.")[-1].split("layers.")[-1].split(".")[0]
            for n, p in loaded.model.named_parameters()
            if "lora_B" in n and p.grad is not None
        }
        return loaded.lora_layers, grads

    assert adapted(0.0) == ("every layer", {"0", "1"})
    assert adapted(0.5) == ("top 1 of 2 layers", {"1"})
