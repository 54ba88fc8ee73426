"""Time from starting `finetune-tui` to its first drawn frame, in a real terminal (tmux).

    python bench/first_frame.py [--repeats 7] [--size 80x24]

Each repeat starts the app in a fresh tmux session (empty runs root: it opens the setup form) and
polls `tmux capture-pane` until the form is on screen. Prints each time and the median (target:
<= 1.5 s). Also checks that the start path imports no torch / transformers / peft.

Then it times opening a new form: the app on a runs root holding one run (so the run list
opens), `n` pressed, polled until the form is drawn (the same marks).
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


def _env(runs: str) -> str:
    # PYTHONPATH: this checkout's code, whatever the console script's install points at.
    return f"FINETUNE_TUI_RUNS={runs} HF_HUB_OFFLINE=1 PYTHONPATH={ROOT}"


def _wait_for(session: str, marks: tuple[str, ...], t0: float, timeout: float) -> float:
    while time.perf_counter() - t0 < timeout:
        text = pane(session)
        if all(mark in text for mark in marks):
            return time.perf_counter() - t0
        time.sleep(0.01)
    raise RuntimeError(f"no frame within {timeout}s; the pane shows:\n{pane(session)}")


def one_start(size: tuple[int, int], timeout: float = 30.0) -> float:
    """Seconds from launching the app in tmux to the setup form being drawn."""
    session = f"ff{os.getpid()}"
    runs = tempfile.mkdtemp(prefix="ff-runs-")
    t0 = time.perf_counter()
    start_app(session, size, _env(runs))
    try:
        return _wait_for(session, READY_MARKS, t0, timeout)
    finally:
        kill(session)
        shutil.rmtree(runs, ignore_errors=True)


def _one_run(runs: Path) -> None:
    """A finished run in `runs`, so the app opens on the run list."""
    sys.path.insert(0, str(ROOT))
    from engine.config import RunConfig
    from engine.rundir.events import EventWriter, Finished, Started

    run = runs / "20240101-120000-bench"
    run.mkdir(parents=True)
    RunConfig().save(run / "config.toml")
    writer = EventWriter(run)
    writer.emit(Started(run_id=run.name, total_steps=1))
    writer.emit(Finished(step=1, elapsed_s=1.0))


def one_new_form(size: tuple[int, int], timeout: float = 30.0) -> float:
    """Seconds from pressing `n` in the run list to the new setup form being drawn."""
    session = f"fn{os.getpid()}"
    runs = tempfile.mkdtemp(prefix="ff-runs-")
    _one_run(Path(runs))
    start_app(session, size, _env(runs))
    try:
        _wait_for(session, ("runs", "finished"), time.perf_counter(), timeout)
        time.sleep(1.0)  # the list settled (its first scan done)
        t0 = time.perf_counter()
        subprocess.run(["tmux", "send-keys", "-t", session, "n"], check=True)
        return _wait_for(session, READY_MARKS, t0, timeout)
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
    forms = []
    for i in range(args.repeats):
        seconds = one_new_form((width, height))
        forms.append(seconds)
        print(f"  new form {i + 1}: {seconds:.3f} s")
    print(
        f"new form (n in the run list): median {statistics.median(forms):.3f} s over "
        f"{len(forms)} (min {min(forms):.3f}, max {max(forms):.3f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
