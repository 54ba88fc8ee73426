"""Does a plain CLI run with the defaults go as fast on an idle machine as right after another run?

    python bench/thread_agreement.py                     # MiniLM-L6, 2,000 SST-2 rows, fp32
    python bench/thread_agreement.py --precision bf16 --rows 2000
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python bench/thread_agreement.py   # AVX2 mimic

Runs `finetune-tui train` with its defaults (only the data, the row cap, the precision and the
seed given) as a user would, one after the other:

1. idle:        after waiting for the 1-minute load average to fall (a fresh runs root: the
                thread count is timed in the first steps);
2. right after: straight after run 1 ended, while the load average still holds it up (a fresh
                runs root again: timed again, under the lingering load);
3. cached:      straight after run 2, in run 1's runs root (the count comes from the cache).

Printed per run: training samples/s (the median of the logged steps' figures, as the monitor
shows them), the whole run's wall time (with its evaluations), the dev accuracy and the engine's
own line on the threads it chose and why; then each run's ratio to the idle one. Thread counts
used to follow the load average, so run 2 got 1 thread where run 1 got 2, and the two differed
by up to 1.4x.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SST2 = next(
    (
        p / "shared" / "data" / "sst2"
        for p in ROOT.parents
        if (p / "shared" / "data" / "sst2").is_dir()
    ),
    ROOT.parent / "shared" / "data" / "sst2",
)


def wait_for_idle(limit: float, max_wait_s: float) -> float:
    """Wait until the 1-minute load average is below `limit` (or the wait runs out)."""
    start = time.monotonic()
    while os.getloadavg()[0] >= limit and time.monotonic() - start < max_wait_s:
        time.sleep(5)
    return os.getloadavg()[0]


def train(runs_root: Path, args: argparse.Namespace) -> dict:
    """One `finetune-tui train` with the defaults; its figures from its events."""
    model = ["--model_name", args.model] if args.model else []  # else the default model
    cmd = [sys.executable, "-m", "tui.cli", "--runs-root", str(runs_root), "train", *model,
           "--data_file_path", str(SST2 / "train.tsv"),
           "--eval_file_path", str(SST2 / "dev.tsv"), "--max_train_rows", str(args.rows),
           "--precision", args.precision, "--seed", "1"]  # fmt: skip
    load = os.getloadavg()[0]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(
            f"the run failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    run_dir = max(runs_root.glob("*/events.jsonl"), key=lambda p: p.stat().st_mtime).parent
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["type"] == "step"]
    started = next(e for e in events if e["type"] == "started")
    finished = next(e for e in events if e["type"] == "finished")
    why = [
        e.get("message", "")
        for e in events
        if e["type"] == "log" and "thread" in e.get("message", "")
    ]
    return {
        "load": load,
        "why": why[-1] if why else "",
        # what the monitor shows: the logged windows' training samples/s (evaluations not in it)
        "samples_per_s": statistics.median(
            e["samples_per_s"] for e in steps if e.get("samples_per_s")
        ),
        "run_s": finished["time"] - started["time"],
        "accuracy": finished["metrics"].get("accuracy"),
    }


def main() -> None:
    """Three runs (idle, right after, cached) and their ratios to the idle one."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="", help="default: the default model (MiniLM-L6)")
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument(
        "--idle-load", type=float, default=0.3, help="the load average that counts as idle"
    )
    ap.add_argument("--max-wait", type=float, default=600, help="seconds to wait for idle at most")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(
        f"CPU: {cpu_name()}; {os.cpu_count()} CPUs; {args.rows} rows, {args.precision}", flush=True
    )
    tmp = Path(tempfile.mkdtemp(prefix="thread-agreement-"))
    try:
        load = wait_for_idle(args.idle_load, args.max_wait)
        print(f"waited for idle: load average {load:.2f}", flush=True)
        results = {"idle": train(tmp / "a", args)}
        results["right after"] = train(tmp / "b", args)
        results["cached"] = train(tmp / "a", args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = results["idle"]["samples_per_s"]
    print(
        f"\n{'run':<12} {'load':>5} {'samples/s':>9} {'vs idle':>7} {'run s':>6} {'dev acc':>7}  threads"
    )
    for name, r in results.items():
        acc = f"{100 * r['accuracy']:.1f}%" if r["accuracy"] is not None else "-"
        print(f"{name:<12} {r['load']:5.2f} {r['samples_per_s']:9.1f} "
              f"{r['samples_per_s'] / base:6.2f}x {r['run_s']:6.1f} {acc:>7}  {r['why']}")  # fmt: skip
    spread = max(r["samples_per_s"] for r in results.values()) / min(
        r["samples_per_s"] for r in results.values()
    )
    print(f"\nfastest / slowest: {spread:.2f}x (goal: within 1.10x)")


def cpu_name() -> str:
    """The CPU's model name (Linux), and the ISA the matmuls may use when it is capped."""
    name = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cap = os.environ.get("ATEN_CPU_CAPABILITY")
    return f"{name} (ATEN_CPU_CAPABILITY={cap})" if cap else name


if __name__ == "__main__":
    main()
