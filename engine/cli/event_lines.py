"""One progress line per event: what the headless commands print while a run goes."""

from __future__ import annotations

import sys
from typing import Any

from engine.core.words import plural
from engine.rundir.events import Event


def clock(seconds: float | None) -> str:
    """Seconds as m:ss or h:mm:ss ('?' when unknown)."""
    if seconds is None:
        return "?"
    s = int(seconds)
    return (
        f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


def _cut(text: str, width: int, end: bool = False) -> str:
    """`text` quoted (repr), cut to `width` characters with '…' (its end kept when `end`)."""
    shown = repr(text)
    if len(shown) <= width:
        return shown
    return "…" + shown[-(width - 1) :] if end else shown[: width - 1] + "…"


def format_event(event: Event) -> str | None:
    """A progress line for an event (None for events not worth a line)."""
    e: Any = event  # dispatched on the type tag below: each branch reads that event's fields
    t = e.type
    if t == "step":
        # Under 80 columns: a wrapped progress line splits "ETA 0:" from "07" in a terminal.
        parts = [f"step {e.step}/{e.total_steps}", f"ep {e.epoch:.2f}"]
        if e.loss is not None:
            parts.append(f"loss {e.loss:.4f}" if e.loss < 10 else f"loss {e.loss:.2f}")
        if isinstance(e.metrics.get("margin"), (int, float)):  # preference pairs
            parts.append(f"margin {e.metrics['margin']:.3f}")
        if e.learning_rate is not None:
            parts.append(f"lr {e.learning_rate:.1e}")
        if e.tokens_per_s:  # a language model's speed is its tokens
            parts.append(f"{e.tokens_per_s:.0f} tok/s")
        elif e.samples_per_s:
            rate = e.samples_per_s
            parts.append(f"{rate:.0f} samples/s" if rate >= 100 else f"{rate:.1f} samples/s")
        parts.append(f"{clock(e.elapsed_s)} ETA {clock(e.eta_s)}")
        return " ".join(parts)
    if t == "eval":
        m = e.metrics
        shown = [
            f"{k} {m[k]:.4f}"
            for k in ("accuracy", "f1", "margin", "loss", "perplexity")
            if isinstance(m.get(k), float)
        ]
        return f"eval at step {e.step} (epoch {e.epoch:.2f}): " + ", ".join(shown)
    if t == "sample":
        return (
            f"sample {e.index + 1}: {_cut(e.prompt, 20, end=True)} -> {_cut(e.generated, 26)} "
            f"(ref {_cut(e.reference, 12)})"
        )
    if t == "phase":
        return f"[{e.name}]" + (f" {e.detail}" if e.detail else "")
    if t == "started":
        return (
            f"run {e.run_id}: {e.train_size} train / {e.eval_size} eval examples, "
            + (f"{len(e.labels)} labels, " if e.labels else "")
            + f"{plural(e.total_steps, 'step')}, {e.precision}, {plural(e.threads, 'thread')}, "
            f"{e.trainable_params:,} of {e.total_params:,} parameters trained"
            + (
                f"; world size {e.world_size} ({plural(e.nnodes, 'machine')} x "
                f"{plural(e.nproc_per_node, 'process', 'processes')}, batch {e.batch_size} x grad_accum {e.grad_accum} each)"
                if getattr(e, "world_size", 1) > 1
                else ""
            )
        )
    if t == "log":
        return f"{e.level}: {e.message}" if e.level != "info" else e.message
    if t == "checkpoint":
        return f"checkpoint saved: {e.path}"
    if t == "finished":
        acc, loss, ppl = (e.metrics.get(k) for k in ("accuracy", "loss", "perplexity"))
        if isinstance(ppl, float) and isinstance(loss, float):  # a language model's score
            score = f", eval loss {loss:.4f} (perplexity {ppl:.1f})"
        else:
            score = f", accuracy {acc:.4f}" if isinstance(acc, float) else ""
        return f"finished at step {e.step}{score}; adapter in {e.output_dir}"
    if t == "stopped":
        return f"stopped at step {e.step} ({e.reason}); adapter in {e.output_dir}"
    if t == "failed":
        where = f"{e.where}: " if e.where else ""
        return f"error: {where}{e.message}" + (f" ({e.hint})" if e.hint else "")
    return None


def printer(e: Event) -> None:
    """Print an event's line, if it has one (the CLI's follower)."""
    line = format_event(e)
    if line:
        print(line, file=sys.stderr if e.type == "failed" else sys.stdout, flush=True)
