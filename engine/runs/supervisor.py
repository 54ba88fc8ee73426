"""The engine process of a run over several processes: `python -m engine.runs.supervisor RUN_DIR`.

It runs torchrun under engine.scaleout.torchrun.supervise, then starts the next queued run once
every process has ended (the single-process engine, engine.runs.worker, does the same itself).
"""

from __future__ import annotations

import sys
from pathlib import Path

from engine.config import RunConfig
from engine.rundir.runs import CONFIG_FILE
from engine.runs.queue import after_run
from engine.scaleout.torchrun import supervise


def main(argv: list[str] | None = None) -> int:
    """`python -m engine.runs.supervisor RUN_DIR [--resume]`: supervise the run, then the queue."""
    args = list(sys.argv[1:] if argv is None else argv)
    resume = "--resume" in args
    paths = [a for a in args if not a.startswith("--")]
    if len(paths) != 1:
        print("usage: python -m engine.runs.supervisor RUN_DIR [--resume]", file=sys.stderr)
        return 2
    run_dir = Path(paths[0]).resolve()
    cfg = RunConfig.load(run_dir / CONFIG_FILE)
    code = supervise(run_dir, [str(run_dir)] + (["--resume"] if resume else []), cfg)
    after_run(run_dir)  # the next queued run starts once every process has ended
    return code


if __name__ == "__main__":
    sys.exit(main())
