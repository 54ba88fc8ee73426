"""Two runs at once: each engine taking every core vs each taking its share (engine.training.cores).

    python bench/concurrent_runs.py                 # MiniLM-L6, 2,000 SST-2 rows, 20 steps per run
    python bench/concurrent_runs.py --steps 40

Prints seconds per training step (from the `step` events, start-up excluded) of: one run alone;
two runs at once each forced to every core (`--threads N`, the old default); two runs at once
with the default threads (the second engine sees the first and takes its share; the first gives
cores back at its next re-check). All in one invocation, so the ratios share the machine's load.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# ../shared beside the checkout (or beside a worktree's parent folder).
SST2 = next(
    (p / "shared" / "data" / "sst2" / "train.tsv" for p in ROOT.parents if (p / "shared").is_dir()),
    ROOT.parent / "shared" / "data" / "sst2" / "train.tsv",
)
sys.path.insert(0, str(ROOT))


def start(root: Path, data: Path, steps: int, threads: int) -> subprocess.Popen[str]:
    """One foreground `train` in its own process."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "engine.cli", "--runs-root", str(root), "train"]
    cmd += ["--data_file_path", str(data), "--max_steps", str(steps), "--logging_steps", "2"]
    cmd += ["--eval_strategy", "no", "--save_strategy", "no", "--checkpoint_minutes", "0"]
    cmd += ["--threads", str(threads)]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)


def seconds_per_step(root: Path) -> list[float]:
    """Each run's seconds per step between its first and last logged step."""
    from engine.rundir.events import Step, read_events
    from engine.rundir.runs import run_dirs

    out = []
    for run_dir in run_dirs(root):
        steps = [e for e in read_events(run_dir) if isinstance(e, Step)]
        first, last = steps[0], steps[-1]
        out.append((last.elapsed_s - first.elapsed_s) / max(1, last.step - first.step))
    return sorted(out)


def session(tmp: Path, name: str, data: Path, steps: int, threads: list[int]) -> list[float]:
    """Start the runs together, wait, return their seconds per step."""
    root = tmp / name
    procs = [start(root, data, steps, t) for t in threads]
    for p in procs:
        p.communicate()
        assert p.returncode == 0, name
    return seconds_per_step(root)


def main() -> None:
    """Run the three settings and print the ratios."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    from engine.core.hardware import available_cores

    cores = available_cores()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "train.tsv"
        lines = SST2.read_text(encoding="utf-8").splitlines()[: args.rows + 1]
        data.write_text("\n".join(lines) + "\n", encoding="utf-8")
        alone = session(tmp, "alone", data, args.steps, [0])
        forced = session(tmp, "forced", data, args.steps, [cores, cores])
        shared = session(tmp, "shared", data, args.steps, [0, 0])
    base = alone[0]
    print(f"cores: {cores}, load average now: {os.getloadavg()[0]:.1f}")
    print(f"alone:                         {base:.3f} s/step")
    print(
        "two at once, every core each:  "
        + ", ".join(f"{s:.3f}" for s in forced)
        + f" s/step ({sum(forced) / len(forced) / base:.1f}x alone)"
    )
    print(
        "two at once, shared (default): "
        + ", ".join(f"{s:.3f}" for s in shared)
        + f" s/step ({sum(shared) / len(shared) / base:.1f}x alone)"
    )


if __name__ == "__main__":
    main()
