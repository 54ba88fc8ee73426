"""Time from starting `finetune-tui` to its first drawn frame, in a real terminal (tmux).

    python bench/first_frame.py [--repeats 7] [--size 80x24]

Each repeat starts the app in a fresh tmux session (empty runs root: it opens the setup form) and
polls `tmux capture-pane` until the form is on screen. Prints each time and the median (target:
<= 1.5 s). Also checks that the start path imports no torch / transformers / peft.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from tmux_app import kill, pane, start_app  # noqa: E402

READY_MARKS = ("Model", "Training", "Start")
HEAVY = ("torch", "transformers", "peft", "accelerate")


def one_start(size: tuple[int, int], timeout: float = 30.0) -> float:
    """Seconds from launching the app in tmux to the setup form being drawn."""
    session = f"ff{os.getpid()}"
    runs = tempfile.mkdtemp(prefix="ff-runs-")
    env = f"FINETUNE_TUI_RUNS={runs} HF_HUB_OFFLINE=1"
    t0 = time.perf_counter()
    start_app(session, size, env)
    try:
        while time.perf_counter() - t0 < timeout:
            text = pane(session)
            if all(mark in text for mark in READY_MARKS):
                return time.perf_counter() - t0
            time.sleep(0.01)
        raise RuntimeError(f"no frame within {timeout}s; the pane shows:\n{pane(session)}")
    finally:
        kill(session)
        shutil.rmtree(runs, ignore_errors=True)


def heavy_imports() -> list[str]:
    """Heavy libraries imported when the app and its first screen load (should be none)."""
    code = (
        "import sys; from tui.app import FinetuneApp; import tui.screens.setup, "
        "tui.screens.monitor, tui.screens.runs; "
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return out.stdout.split()


def main() -> int:
    """Run the repeats and print the median."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--size", default="80x24", help="terminal size, WxH")
    args = parser.parse_args()
    if not shutil.which("tmux") or not shutil.which("finetune-tui"):
        print("needs tmux and the finetune-tui console script (pip install -e .)")
        return 2
    width, height = (int(v) for v in args.size.split("x"))
    heavy = heavy_imports()
    print(f"heavy imports on the start path: {', '.join(heavy) or 'none'}")
    one_start((width, height))  # warm the file cache; not counted
    times = []
    for i in range(args.repeats):
        seconds = one_start((width, height))
        times.append(seconds)
        print(f"  start {i + 1}: {seconds:.3f} s")
    median = statistics.median(times)
    verdict = "ok" if median <= 1.5 else "SLOW"
    print(
        f"first frame: median {median:.3f} s over {len(times)} starts "
        f"(min {min(times):.3f}, max {max(times):.3f}); target <= 1.5 s: {verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
