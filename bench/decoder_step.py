"""One causal-lm training step at a real shape, our engine's model set-up, levers side by side.

    python bench/decoder_step.py                         # SmolLM2-135M shape, bf16, 8 layers
    python bench/decoder_step.py --layers 30 --steps 4   # the whole depth
    python bench/decoder_step.py --variants engine,compile-norm,compile-layer
    python bench/decoder_step.py --layers 30 --profile   # time by op, the matmuls' GFLOP/s

The model is the SmolLM2-135M config with random weights (fewer layers by default: every layer is
the same, and the step time is per layer plus the head), set up as the engine sets it up for
bf16 LoRA training: frozen linears in bf16, the fused LoRA layer, labels-only logits, gradient
checkpointing as `--checkpointing` says. A batch of 12 rows of ~230 tokens (prompt ~90, answer
~140, answer-only labels). Variants alternate step by step so a burst of load on a shared machine
falls on all; the median step time of each is printed with the ratio to the first.

- engine: what the engine runs today (GQA attention with a bf16 softmax and the one-Function
  RMSNorm: engine/models/gqa_attention.py, engine/models/lean_norm.py).
- hf-eager: transformers' eager attention and RMSNorm (the engine before them).
- compile-norm: RMSNorm's arithmetic through torch.compile (one fused kernel forward and backward
  instead of the fp32 upcast, square, mean, rsqrt and two multiplies).
- gqa-attn-fp32softmax: the GQA attention with an fp32 softmax.
- compile-mlp: SiLU(gate) x up through torch.compile.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))


def build(layers: int, checkpointing: bool, attention: str) -> Any:
    """The engine's bf16 LoRA set-up on a random SmolLM2-shaped Llama."""
    import torch
    import transformers as tf
    from peft import LoraConfig, TaskType, get_peft_model
    from sft_scale import SHAPES  # the real configs (bench/sft_scale.py)

    from engine.models.fused_lora import fuse_lora_layers
    from engine.models.lora import store_frozen_linears_in_bf16
    from engine.tasks.causal_lm import answer_logits
    from engine.tasks.causal_lm.modeling import upcast_trainable

    spec = {k: v for k, v in SHAPES["smollm2-135m"].items() if k != "kind"}
    spec["num_hidden_layers"] = layers
    config = tf.LlamaConfig(**spec, use_cache=False)
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
    if attention == "eager":
        from engine.models.gqa_attention import use_gqa_attention
        from engine.models.lean_norm import use_lean_norms

        use_gqa_attention(model.get_base_model())
        use_lean_norms(model)
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


def _rms_norm(x: Any, weight: Any, eps: float) -> Any:
    """LlamaRMSNorm's arithmetic as a free function (one compiled graph for every layer)."""
    import torch

    dtype = x.dtype
    x32 = x.to(torch.float32)
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(dtype)


def _silu_mul(gate: Any, up: Any) -> Any:
    import torch

    return torch.nn.functional.silu(gate) * up


def _gqa_attention_fp32_softmax() -> Any:
    """The engine's GQA attention with transformers' fp32 softmax instead of the bf16 one."""
    import torch

    def attention(module: Any, query: Any, key: Any, value: Any, mask: Any, scaling: float,
                  dropout: float = 0.0, **kw: Any) -> Any:  # fmt: skip
        b, h, n, d = query.shape
        hkv = key.shape[1]
        g = h // hkv
        scores = torch.matmul(query.reshape(b, hkv, g * n, d), key.transpose(2, 3)).mul_(scaling)
        if mask is not None:
            scores.view(b, hkv, g, n, -1).add_(mask.unsqueeze(2))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        out = torch.matmul(probs, value).view(b, h, n, d)
        return out.transpose(1, 2).contiguous(), None

    return attention


def apply_variant(model: Any, variant: str) -> None:
    """Switch the model to a variant's code path."""
    import types

    import torch
    from transformers.models.llama import modeling_llama as ml

    base = model.get_base_model()
    norms = [m for m in base.modules() if isinstance(m, ml.LlamaRMSNorm)]
    if variant == "hf-eager":
        base.set_attn_implementation("eager")
        for m in norms:
            m.forward = types.MethodType(type(m).forward, m)
    elif variant == "compile-norm":
        fn = torch.compile(_rms_norm, dynamic=True)
        for m in norms:
            m.forward = types.MethodType(
                lambda self, x: fn(x, self.weight, self.variance_epsilon), m
            )
    elif variant == "gqa-attn-fp32softmax":
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, eager_mask

        name = "bench_gqa_fp32softmax"
        AttentionInterface.register(name, _gqa_attention_fp32_softmax())
        AttentionMaskInterface.register(name, eager_mask)
        base.set_attn_implementation(name)
    elif variant == "compile-mlp":
        silu_mul = torch.compile(_silu_mul, dynamic=True)
        for m in base.modules():
            if isinstance(m, ml.LlamaMLP):
                m.forward = types.MethodType(
                    lambda self, x: self.down_proj(silu_mul(self.gate_proj(x), self.up_proj(x))), m
                )
    elif variant == "compile-layer":
        for layer in base.model.layers:
            layer.forward = torch.compile(layer.forward, dynamic=True)


def profile_step(step: Any) -> None:
    """Time by op of one step after two warm-ups, and the matmuls' GFLOP/s."""
    from torch.profiler import ProfilerActivity, profile

    step()
    step()
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        step()
    averages = prof.key_averages()
    print(averages.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=36))
    total = sum(k.self_cpu_time_total for k in averages)
    for k in averages:
        if k.key in ("aten::mm", "aten::bmm", "aten::addmm") and k.self_cpu_time_total:
            seconds = k.self_cpu_time_total / 1e6
            print(
                f"{k.key}: {k.flops / 1e9:.0f} GFLOP in {seconds:.2f} s = "
                f"{k.flops / 1e9 / seconds:.0f} GFLOP/s, {k.self_cpu_time_total / total:.0%} of the step"
            )


def main() -> None:
    """Time the variants step by step and print medians."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--rows", type=int, default=12)
    p.add_argument("--variants", default="engine,hf-eager")
    p.add_argument("--checkpointing", default="on", choices=("on", "off"))
    p.add_argument("--attention", default="eager")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument(
        "--profile", action="store_true", help="profile one step of the first variant: time by op"
    )
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

    if a.profile:
        profile_step(lambda: step(models[variants[0]]))
        return
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
