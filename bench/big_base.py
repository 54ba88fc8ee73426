"""3B-8B decoders with a quantised frozen base: peak RSS and seconds per LoRA step, side by side.

    python bench/big_base.py                                  # 3B and 8B shapes, fp32/int8/int4
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python bench/big_base.py   # an AVX2 server
    python bench/big_base.py --shapes llama-3.2-3b --bases fp32 int8 --layers 4  # a quick look

Each (shape, base precision) runs in its own subprocess, so each peak RSS is its own: the model
is built layer by layer from the real config with random weights (engine.models.quant_loading,
never the whole model in fp32 unless the base is fp32), LoRA r=8 goes on every block linear
(the engine's default), and one optimiser step of a batch of 2 x 512 tokens runs with gradient
checkpointing on every layer (the engine's auto turns it on at these sizes: without it a 3B
step keeps ~30 GB of fp32 activations), the loss on the second half of each row (the answers)
through the engine's answer-logits path. fp32 is skipped where its weights alone would not fit
in the memory free now. Compute is fp32 throughout; every side serves blocks from 4 MB up
with mmap, as a quantised-base run does (engine.core.hardware.mmap_large_blocks).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

# The real configs' shapes (hub config.json of each model).
SHAPES: dict[str, dict[str, Any]] = {
    "llama-3.2-3b": dict(
        hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
        num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072,
        rope_theta=500000.0, tie_word_embeddings=True, rms_norm_eps=1e-5, head_dim=128,
    ),
    "llama-3.1-8b": dict(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072,
        rope_theta=500000.0, tie_word_embeddings=False, rms_norm_eps=1e-5, head_dim=128,
    ),
}  # fmt: skip
BATCH, LENGTH = 2, 512


def config_of(shape: str, layers: int) -> Any:
    """A LlamaConfig of the shape (with `layers` blocks when given)."""
    from transformers import LlamaConfig

    values = dict(SHAPES[shape])
    if layers:
        values["num_hidden_layers"] = layers
    config = LlamaConfig(**values)
    config.use_cache = False
    return config


def peak_rss() -> int:
    """This process's peak RSS in bytes."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(shape: str, base: str, layers: int) -> dict:
    """Build, wrap with LoRA, run one step; the figures as a dict."""
    import psutil
    import torch
    from peft import LoraConfig, TaskType, get_peft_model

    from engine.core.hardware import available_cores, mmap_large_blocks, tune_allocator
    from engine.models.quant_loading import random_quantized
    from engine.tasks.causal_lm import answer_logits
    from engine.tasks.causal_lm.targets import choose_decoder_targets

    tune_allocator()
    mmap_large_blocks()  # what a quantised-base run does; here for every base alike
    torch.set_num_threads(available_cores())
    config = config_of(shape, layers)
    start = time.perf_counter()
    model = random_quantized(config, base, "fp32", "sdpa")
    load_s = time.perf_counter() - start
    loaded_rss = psutil.Process().memory_info().rss
    load_peak = peak_rss()
    targets = choose_decoder_targets(model, "all-linear")
    lora = LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=16, target_modules=targets)
    model = get_peft_model(model, lora)
    model.gradient_checkpointing_enable({"use_reentrant": False})
    model.enable_input_require_grads()
    answer_logits.install(model.get_base_model())
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-4)
    torch.manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (BATCH, LENGTH))
    labels = ids.clone()
    labels[:, : LENGTH // 2] = -100
    start = time.perf_counter()
    loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
    loss.backward()
    optim.step()
    optim.zero_grad(set_to_none=True)
    step_s = time.perf_counter() - start
    return {
        "shape": shape,
        "base": base,
        "layers": config.num_hidden_layers,
        "load_s": round(load_s, 1),
        "loaded_gb": round(loaded_rss / 1024**3, 2),
        "load_peak_gb": round(load_peak / 1024**3, 2),
        "peak_gb": round(peak_rss() / 1024**3, 2),
        "step_s": round(step_s, 1),
        "loss": round(float(loss.detach()), 3),
    }


def fp32_fits(shape: str, layers: int) -> bool:
    """Whether fp32 weights plus ~3 GB for the step fit in the memory free now."""
    import psutil

    from engine.tasks.causal_lm.base_precision import weight_split

    need = weight_split(config_of(shape, layers)).bytes_for("fp32") + 3 * 1024**3
    return need < psutil.virtual_memory().available


def main() -> None:
    """Run every (shape, base) in its own subprocess and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--bases", nargs="+", default=["int8", "fp32", "int4"])
    parser.add_argument("--layers", type=int, default=0, help="blocks per model (0 = the real)")
    parser.add_argument("--child", nargs=2, metavar=("SHAPE", "BASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.layers)), flush=True)
        return
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"}
    isa = os.environ.get("ATEN_CPU_CAPABILITY", "default")
    print(f"ATEN_CPU_CAPABILITY={isa} ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA')}")
    print(f"uptime: {os.popen('uptime').read().strip()}", flush=True)
    rows = []
    for shape in args.shapes:
        for base in args.bases:
            if base == "fp32" and not fp32_fits(shape, args.layers):
                print(f"{shape} fp32: skipped (its weights do not fit in the memory free now)")
                continue
            cmd = [sys.executable, __file__, "--child", shape, base, "--layers", str(args.layers)]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode:
                print(f"{shape} {base}: failed\n{done.stderr[-2000:]}", flush=True)
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{'shape':14} {'base':5} {'layers':>6} {'peak GB':>8} {'loaded GB':>9} "
          f"{'s/step':>7} {'vs fp32':>7}")  # fmt: skip
    for row in rows:
        fp32 = next((r for r in rows if r["shape"] == row["shape"] and r["base"] == "fp32"), None)
        ratio = f"{row['step_s'] / fp32['step_s']:.2f}x" if fp32 else "-"
        print(
            f"{row['shape']:14} {row['base']:5} {row['layers']:>6} {row['peak_gb']:>8.2f} "
            f"{row['loaded_gb']:>9.2f} {row['step_s']:>7.1f} {ratio:>7}"
        )
    print(f"uptime: {os.popen('uptime').read().strip()}")


if __name__ == "__main__":
    main()
