"""Preflight: time a few real training steps to estimate speed, run time and peak memory."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

from engine.config import RunConfig
from engine.core.errors import UserError


@dataclass
class PreflightReport:
    """What a few timed steps tell about the whole run."""

    seconds_per_step: float
    samples_per_s: float
    total_steps: int
    estimated_s: float
    peak_rss_bytes: int
    free_bytes: int
    precision: str
    threads: int
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # task-specific lines (e.g. a memory breakdown)

    @property
    def fits_in_memory(self) -> bool:
        """False when the estimated peak would not fit in the memory free now."""
        return self.peak_rss_bytes < self.free_bytes

    def lines(self) -> list[str]:
        """A human summary."""
        from engine.core.words import plural

        gb = 1024**3
        out = [
            f"{self.seconds_per_step:.3f} s/step, {self.samples_per_s:.1f} samples/s "
            f"({self.precision}, {plural(self.threads, 'thread')})",
            f"{self.total_steps} steps: about {_duration(self.estimated_s)} of training",
            f"peak memory about {self.peak_rss_bytes / gb:.2f} GB; {self.free_bytes / gb:.1f} GB free",
        ]
        return out + self.notes + [f"warning: {w}" for w in self.warnings]


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


def preflight(cfg: RunConfig, steps: int = 6) -> PreflightReport:
    """Time `steps` optimiser steps on the real model and data, each batch shape warmed up first."""
    import psutil
    import torch

    from engine.core.hardware import (
        free_memory_bytes,
        resolve_precision,
        resolve_threads,
        tune_allocator,
    )
    from engine.tasks import get_task
    from engine.training.trainer_setup import quiet_libraries, total_steps

    tune_allocator(cfg.training.memory_mode)
    cfg = cfg.copy()
    t = cfg.training
    task = get_task(cfg.task)
    precision = resolve_precision(t.precision, cfg.model.base_precision)
    threads = resolve_threads(t.threads)
    torch.set_num_threads(threads)
    quiet_libraries()
    data = task.prepare_data(cfg, None)
    loaded = task.load_model(cfg, data, precision)
    # batch_size 0 (auto) depends on the rows and the chosen max_length
    cfg = cfg.with_batch_size(data.train_size, max_length=loaded.max_length)
    t = cfg.training
    model = loaded.model
    n_train = data.train_size
    rng = random.Random(t.seed)
    n = min(n_train, steps * t.batch_size)
    picked = task.subset(data, sorted(rng.sample(range(n_train), n)))
    encoded = task.encode(cfg, picked, loaded.tokenizer, None)
    n = len(encoded.train)  # rows too long for max_length are dropped by the encoder
    if n == 0:
        raise UserError(
            "no sampled training example fits in max_length",
            where="model.max_length",
            hint="raise max_length (0 = auto picks it from the data)",
            field="model.max_length",
        )
    sample = [encoded.train[i] for i in range(n)]
    collate = task.collator(cfg, loaded.tokenizer)
    if t.group_by_length:  # batches of similar lengths, as training's length grouping makes them
        sample.sort(key=lambda item: len(item["input_ids"]))
    batches = [collate(sample[s : s + t.batch_size]) for s in range(0, n, t.batch_size)]
    if loaded.max_length:
        cfg.model.max_length = loaded.max_length  # the notes below speak of the chosen length
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=t.learning_rate)
    model.train()
    rss0 = psutil.Process().memory_info().rss

    def step(batch: dict) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(**batch).loss
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)

    # Each new tensor shape costs a one-off kernel set-up (most of a second in bf16) that training
    # pays once per shape and then reuses thousands of times: warm every shape up, then time.
    for b in batches:
        step(b)
    start = time.perf_counter()
    for b in batches:
        step(b)
    per_step = (time.perf_counter() - start) / len(batches) * t.grad_accum
    peak = max(psutil.Process().memory_info().rss, rss0)
    try:
        import resource

        peak = max(peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    except ImportError:  # pragma: no cover
        pass
    total = total_steps(n_train, cfg)
    eval_s = 0.0
    if data.eval_size and t.eval_strategy != "no":
        evals = math.ceil(t.epochs) if t.eval_strategy == "epoch" else total // max(t.eval_steps, 1)
        # Forward only, bigger batches: roughly a third of a training step per batch.
        eval_s = evals * math.ceil(data.eval_size / t.batch_size) * per_step / 3
    report = PreflightReport(
        seconds_per_step=per_step,
        samples_per_s=t.batch_size * t.grad_accum / per_step,
        total_steps=total,
        estimated_s=per_step * total + eval_s,
        peak_rss_bytes=int(peak * 1.3),  # a whole epoch measured ~1.3x this short pass
        free_bytes=free_memory_bytes(),
        precision=precision,
        threads=threads,
    )
    if not report.fits_in_memory:
        report.warnings.append("the run may not fit in free memory: lower batch_size or max_length")
    report.notes.extend(loaded.notes)
    for note in getattr(task, "preflight_notes", lambda *a: [])(cfg, precision, report):
        (report.warnings if note.startswith("!") else report.notes).append(note.lstrip("!"))
    return report
