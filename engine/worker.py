"""Entry point of a detached engine process: `python -m engine.worker RUN_DIR [--resume]`."""

from __future__ import annotations

import signal
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Train the run directory given on the command line."""
    args = list(sys.argv[1:] if argv is None else argv)
    resume = "--resume" in args
    paths = [a for a in args if not a.startswith("--")]
    if len(paths) != 1:
        print("usage: python -m engine.worker RUN_DIR [--resume]", file=sys.stderr)
        return 2
    # A lost terminal must never end a run (we are in our own session already; belt and braces).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from engine.errors import UserError
    from engine.queue import after_run
    from engine.train import run_training

    run_dir = Path(paths[0]).resolve()
    try:
        code = run_training(run_dir, resume=resume)
    except UserError as exc:  # refused before it wrote anything (e.g. another engine has the run)
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2
    after_run(run_dir)  # the next queued run starts now, with or without a UI
    return code


if __name__ == "__main__":
    sys.exit(main())
