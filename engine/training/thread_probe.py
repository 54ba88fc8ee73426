"""Thread counts measured, not assumed: time the first real training steps at a few counts.

How many threads make a step fastest depends on the CPU, the model's matrices and the batch:
MiniLM classification on a 2-vCPU AVX2 EPYC ran faster on 1 thread than on 2, while bigger
matrices gain from every core. So a run whose `threads` is 0 (auto) times its first training
steps at candidate counts (interleaved, so a burst of load from elsewhere falls on all), keeps
the fastest, and stores the choice in the runs root, keyed by the model's shape, task,
precision, batch and length band and the machine: the next such run skips the probe. The
probe's steps are real training steps; it costs only the slower counts' extra time.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.core.words import plural

PROBES_FILE = ".thread-probes.json"  # hidden, as .cache: the run list is the folders
PROBE_STEPS = 5  # timed steps per candidate count (the median resists a burst of load)
WARMUP_STEPS = 1  # the first step builds kernels and fills the allocator: not timed
# A run shorter than this many probes' length trains at the first count without probing.
MIN_RUN_PROBES = 4
# A smaller count within this fraction of the fastest wins: it leaves cores to others.
SMALLER_WITHIN = 0.02


def candidate_counts(share: int, logical: int = 0, node: int = 0) -> list[int]:
    """Thread counts worth timing for a share of `share` physical cores.

    The share itself and half of it; 1 as well on small machines (where one thread sometimes
    wins: the per-op overhead of small matrices is paid by every thread); `logical`, the
    count with SMT siblings, when they are free to use; `node`, one NUMA node's physical
    cores, when the share spans several nodes.
    """
    share = max(1, share)
    counts = {share, max(1, share // 2)}
    if share <= 4:
        counts.add(1)
    if logical > share:
        counts.add(logical)
    if 0 < node < share:
        counts.add(node)
    return sorted(counts)


def size_band(n: float) -> int:
    """The power of two nearest `n` (bands of batch sizes and lengths that time alike)."""
    return 2 ** round(math.log2(n)) if n >= 1 else 0


@dataclass
class ProbeResult:
    """The count a probe (or the cache) chose and why, with the speed measured at each count."""

    threads: int
    why: str
    speeds: dict[int, float] = field(default_factory=dict)  # count -> tokens per second
    cached: bool = False
    outside: float = 0.0  # cores other programs kept busy while the probe ran

    @property
    def worth_storing(self) -> bool:
        """False for a probe that other programs' work disturbed (the next run probes again)."""
        return not self.cached and bool(self.speeds) and self.outside < BUSY_OUTSIDE

    def message(self) -> str:
        """The run log's line."""
        text = f"{plural(self.threads, 'thread')}: {self.why}"
        if not self.cached and self.outside >= BUSY_OUTSIDE:
            text += f"; not cached: other programs kept {self.outside:.1f} cores busy meanwhile"
        return text


class ThreadProbe:
    """The probe's schedule and choice, fed with step timings (no clock or torch inside)."""

    def __init__(
        self, counts: list[int], steps: int = PROBE_STEPS, warmup: int = WARMUP_STEPS
    ) -> None:
        self.counts = sorted(set(counts))
        self.steps = steps
        rounds = [self.counts if r % 2 == 0 else self.counts[::-1] for r in range(steps)]
        self.schedule = [self.counts[-1]] * warmup + [c for r in rounds for c in r]
        self.warmup = warmup
        self.timed: dict[int, list[tuple[float, int]]] = {c: [] for c in self.counts}
        self.position = 0

    @property
    def length(self) -> int:
        """Steps the probe takes, warm-up included."""
        return len(self.schedule)

    @property
    def done(self) -> bool:
        """True once every scheduled step has been recorded."""
        return self.position >= len(self.schedule)

    def threads_now(self) -> int:
        """The count the next step runs at."""
        return self.schedule[min(self.position, len(self.schedule) - 1)]

    def record(self, seconds: float, tokens: int) -> None:
        """The step just run at threads_now() took `seconds` over `tokens` (padded) tokens."""
        if self.done:
            return
        if self.position >= self.warmup:
            self.timed[self.threads_now()].append((max(seconds, 1e-9), max(tokens, 1)))
        self.position += 1

    def speeds(self) -> dict[int, float]:
        """Tokens per second at each count timed so far, on the same work for every count.

        A step's time is a fixed part (per-op overhead, the optimiser) plus a part per token,
        and length-bucketed batches differ in tokens several-fold: so each count's steps are
        fitted to `seconds = fixed + per_token * tokens` and every count is scored on all the
        probe's batches. Comparing each count's median tokens/s instead let the batches a count
        happened to draw decide (MiniLM, AVX2: 2 threads 0.9x-2.45x of 1 over eight probes;
        fitted, 1.24x-1.42x over six). The fit is robust (medians of pairwise slopes): on a
        shared machine one step in a few meets a burst of someone else's work (a 45 ms MiniLM step took
        330 ms once in seven). Steps all of one length need no fit: their median tokens/s.
        """
        work = [tokens for rows in self.timed.values() for _, tokens in rows]
        out = {}
        for count, rows in self.timed.items():
            if not rows:
                continue
            fit = _robust_line(rows)
            if fit is None:
                out[count] = statistics.median(t / s for s, t in rows)
            else:
                fixed, per_token = fit
                out[count] = sum(work) / max(sum(fixed + per_token * t for t in work), 1e-9)
        return out

    def choice(self) -> ProbeResult:
        """The fastest count (a smaller one within SMALLER_WITHIN of it wins) and why."""
        speeds = self.speeds()
        if not speeds:
            return ProbeResult(self.counts[-1], "not measured", {})
        fastest = max(speeds.values())
        best = min(c for c, v in speeds.items() if v >= fastest * (1 - SMALLER_WITHIN))
        others = sorted((c for c in speeds if c != best), key=lambda c: -speeds[c])
        if not others:
            return ProbeResult(best, "the only count", speeds)
        parts = []
        for c in others:
            ratio = speeds[best] / speeds[c]
            if ratio >= 1:
                parts.append(f"{ratio:.2f}x faster than {c}")
            else:
                parts.append(f"as fast as {c} ({ratio:.2f}x)")
        why = ", ".join(parts) + f" in {plural(self.steps, 'probe step')} each"
        if speeds[best] < fastest:
            why += f" (within {SMALLER_WITHIN:.0%} of the fastest: leaves cores free)"
        return ProbeResult(best, why, speeds)


def _robust_line(rows: list[tuple[float, int]]) -> tuple[float, float] | None:
    """(fixed seconds, seconds per token) through (seconds, tokens) rows: Theil-Sen, both >= 0.

    None when the rows have fewer than two distinct token counts (no slope to fit).
    """
    slopes = [
        (s2 - s1) / (t2 - t1)
        for i, (s1, t1) in enumerate(rows)
        for s2, t2 in rows[i + 1 :]
        if t2 != t1
    ]
    if not slopes:
        return None
    per_token = max(0.0, statistics.median(slopes))
    fixed = max(0.0, statistics.median(s - per_token * t for s, t in rows))
    if fixed == 0.0 and per_token == 0.0:
        return None
    return fixed, per_token


# -- the cache ------------------------------------------------------------------------------------


def machine_key() -> dict[str, Any]:
    """What makes this machine time differently: CPU model, usable cores, the ISA torch may use."""
    from engine.core.topology import machine_topology

    topo = machine_topology()
    return {
        "cpu": topo.model,
        "cores": topo.usable,
        "logical": topo.usable_logical,
        "isa": os.environ.get("ATEN_CPU_CAPABILITY", ""),
        "onednn_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
    }


def model_shape(model: Any) -> dict[str, Any]:
    """The sizes of a model's matrices that decide its step's threading."""
    config = getattr(model, "config", None)
    names = (
        "model_type",
        "hidden_size",
        "num_hidden_layers",
        "intermediate_size",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
    )
    return {
        n: getattr(config, n) for n in names if isinstance(getattr(config, n, None), (int, str))
    }


def probe_key(
    shape: dict[str, Any], task: str, precision: str, batch: int, length: float, machine: dict
) -> str:
    """The cache key: model shape + task + precision + batch/length band + machine."""
    parts = {
        "shape": shape,
        "task": task,
        "precision": precision,
        "batch": size_band(batch),
        "length": size_band(length),
        "machine": machine,
    }
    return json.dumps(parts, sort_keys=True, separators=(",", ":"))


class ProbeCache:
    """Probe results under a runs root (one JSON file); an unreadable file counts as empty."""

    def __init__(self, root: Path) -> None:
        self.path = root / PROBES_FILE

    def _load(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return raw if isinstance(raw, dict) else {}

    def get(self, key: str) -> ProbeResult | None:
        """The stored choice for `key`, or None (also for a malformed entry)."""
        entry = self._load().get(key)
        if not isinstance(entry, dict):
            return None
        threads, run, when = entry.get("threads"), entry.get("run", ""), entry.get("when", 0)
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            return None
        why = entry.get("why") if isinstance(entry.get("why"), str) else ""
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(when)) if when else "earlier"
        note = f"cached from run {run} ({stamp})" if run else f"cached ({stamp})"
        return ProbeResult(threads, f"{note}: {why}" if why else note, {}, cached=True)

    def put(self, key: str, result: ProbeResult, run: str) -> None:
        """Store a measured choice."""
        from engine.core.atomic import atomic_write_text

        data = self._load()
        data[key] = {
            "threads": result.threads,
            "why": result.why,
            "speeds": {str(c): round(v, 1) for c, v in result.speeds.items()},
            "run": run,
            "when": time.time(),
        }
        with contextlib.suppress(OSError):  # a failed write only costs the next run a probe
            atomic_write_text(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n")


# -- in a run ---------------------------------------------------------------------------------------
# Other programs busier than this (in cores) during a probe: its choice is not stored.
BUSY_OUTSIDE = 0.5


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU-seconds of the whole machine, CPU-seconds of this process) so far."""
    import psutil

    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    own = psutil.Process().cpu_times()
    return busy, own.user + own.system


class ProbeRunner:
    """Drives a ThreadProbe from the Trainer's step hooks: sets each step's count, times it."""

    def __init__(
        self,
        probe: ThreadProbe,
        meter: Any,
        set_threads: Any,
        finish: Any,
        clock: Any = time.perf_counter,
        cpu: Any = None,
    ) -> None:
        self.probe, self.meter, self.set_threads = probe, meter, set_threads
        self.finish = finish  # called with the ProbeResult once the probe is done
        self.clock, self.cpu = clock, cpu if cpu is not None else cpu_seconds
        self.started = (0.0, 0.0, 0.0)  # wall clock, machine and own CPU-seconds at the start
        self.t0 = 0.0
        self.tokens0 = 0
        self.result: ProbeResult | None = None

    def reset_clock(self) -> None:
        """Start timing the next step from now (after an evaluation or a save)."""
        self.t0, self.tokens0 = self.clock(), int(self.meter.padded)

    def begin(self) -> None:
        """Training starts: the first step's count."""
        self.set_threads(self.probe.threads_now())
        self.reset_clock()
        self.started = (self.clock(), *self.cpu())

    def outside_load(self) -> float:
        """Cores other programs kept busy since the probe began."""
        wall = self.clock() - self.started[0]
        busy, own = self.cpu()
        other = (busy - self.started[1]) - (own - self.started[2])
        return max(0.0, other / wall) if wall > 0 else 0.0

    def step_end(self) -> ProbeResult | None:
        """A step ended: record it, set the next count; the result once the probe is done."""
        if self.result is not None:
            return None
        self.probe.record(self.clock() - self.t0, int(self.meter.padded) - self.tokens0)
        if self.probe.done:
            self.result = self.probe.choice()
            self.result.outside = self.outside_load()
            self.set_threads(self.result.threads)
            self.finish(self.result)
            return self.result
        self.set_threads(self.probe.threads_now())
        self.reset_clock()
        return None
