"""One causal-lm training step at a real shape, our engine's model set-up, levers side by side.

    python bench/decoder_step.py                         # SmolLM2-135M shape, bf16, 8 layers
    python bench/decoder_step.py --layers 30 --steps 4   # the whole depth
    python bench/decoder_step.py --variants eager,compile-norm,compile-layer

The model is the SmolLM2-135M config with random weights (fewer layers by default: every layer is
the same, and the step time is per layer plus the head), set up as the engine sets it up for
bf16 LoRA training: frozen linears in bf16, the fused LoRA layer, labels-only logits, gradient
checkpointing as `--checkpointing` says. A batch of 12 rows of ~230 tokens (prompt ~90, answer
~140, answer-only labels). Variants alternate step by step so a burst of load on a shared machine
falls on all; the median step time of each is printed with the ratio to `eager`.

- eager: what the engine runs today.
- compile-norm: RMSNorm's forward through torch.compile (one fused kernel forward and backward
  instead of the fp32 upcast, square, mean, rsqrt and two multiplies).
- compile-layer: each decoder layer's forward through torch.compile (the fused LoRA Function
  and attention inside it too).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SMOLLM2 = dict(
    hidden_size=576,
    intermediate_size=1536,
    num_attention_heads=9,
    num_key_value_heads=3,
    vocab_size=49152,
    max_position_embeddings=8192,
    rope_theta=100000.0,
    tie_word_embeddings=True,
    rms_norm_eps=1e-5,
)


def build(layers: int, checkpointing: bool, attention: str) -> Any:
    """The engine's bf16 LoRA set-up on a random SmolLM2-shaped Llama."""
    import torch
    import transformers as tf
    from peft import LoraConfig, TaskType, get_peft_model

    from engine.models.fused_lora import fuse_lora_layers
    from engine.models.lora import store_frozen_linears_in_bf16
    from engine.tasks.causal_lm import answer_logits
    from engine.tasks.causal_lm.modeling import upcast_trainable

    config = tf.LlamaConfig(**SMOLLM2, num_hidden_layers=layers, use_cache=False)
    config._attn_implementation = attention
    torch.manual_seed(0)
    model = tf.LlamaForCausalLM(config).to(torch.bfloat16)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora = LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=16, target_modules=targets)
    model = get_peft_model(model, lora)
    if checkpointing:
        model.gradient_checkpointing_enable({"use_reentrant": False})
        model.enable_input_require_grads()
    upcast_trainable(model)
    store_frozen_linears_in_bf16(model)
    fuse_lora_layers(model)
    answer_logits.install(model.get_base_model())
    model.train()
    return model


def batch(rows: int, seed: int = 0) -> dict[str, Any]:
    """Rows of Alpaca-like lengths, padded to the longest, labels on the answers only."""
    import random

    import torch

    rng = random.Random(seed)
    lengths = [
        (max(12, int(rng.lognormvariate(4.4, 0.3))), max(8, int(rng.lognormvariate(4.8, 0.3))))
        for _ in range(rows)
    ]
    longest = max(p + a for p, a in lengths)
    ids = torch.zeros(rows, longest, dtype=torch.long)
    mask = torch.zeros(rows, longest, dtype=torch.long)
    labels = torch.full((rows, longest), -100, dtype=torch.long)
    for i, (p, a) in enumerate(lengths):
        ids[i, : p + a] = torch.randint(10, 8000, (p + a,))
        mask[i, : p + a] = 1
        labels[i, p : p + a] = ids[i, p : p + a]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def apply_variant(model: Any, variant: str) -> None:
    """Switch the model to a variant's code path."""
    import torch
    from transformers.models.llama import modeling_llama as ml

    base = model.get_base_model()
    if variant == "compile-norm":
        for module in base.modules():
            if isinstance(module, ml.LlamaRMSNorm):
                module.forward = torch.compile(module.forward, dynamic=True)
    elif variant == "compile-layer":
        for layer in base.model.layers:
            layer.forward = torch.compile(layer.forward, dynamic=True)


def main() -> None:
    """Time the variants step by step and print medians."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--rows", type=int, default=12)
    p.add_argument("--variants", default="eager,compile-norm")
    p.add_argument("--checkpointing", default="on", choices=("on", "off"))
    p.add_argument("--attention", default="eager")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    variants = a.variants.split(",")
    models = {}
    for v in variants:
        models[v] = build(a.layers, a.checkpointing == "on", a.attention)
        apply_variant(models[v], v)
    data = batch(a.rows)
    tokens = int(data["attention_mask"].sum())

    def step(model: Any) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**data).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    for v in variants:  # warm-up (compilation happens here)
        start = time.perf_counter()
        step(models[v])
        step(models[v])
        print(f"{v}: warm-up {time.perf_counter() - start:.1f} s", flush=True)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(a.steps):
        for v in variants:
            times[v].append(step(models[v]))
    base = statistics.median(times[variants[0]])
    print(
        f"{a.layers} layers, {a.rows} rows, {tokens} real tokens, checkpointing {a.checkpointing}"
    )
    for v in variants:
        med = statistics.median(times[v])
        print(f"{v:14} {med:7.3f} s/step  {tokens / med:7.0f} tokens/s  {base / med:5.2f}x")


if __name__ == "__main__":
    main()
