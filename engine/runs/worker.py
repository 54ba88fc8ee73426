"""Entry point of a detached engine process: `python -m engine.runs.worker RUN_DIR [--resume]`.

Under torchrun every training process runs this; on a machine that joined a run it is
`python -m engine.runs.worker --join RUNS_ROOT` and learns the run from rank 0.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Train the run directory given on the command line."""
    args = list(sys.argv[1:] if argv is None else argv)
    resume = "--resume" in args
    join_root = None
    if "--join" in args:
        at = args.index("--join")
        join_root = Path(args[at + 1]) if at + 1 < len(args) else None
        del args[at : at + 2]
    paths = [a for a in args if not a.startswith("--")]
    if (len(paths) != 1) == (join_root is None):
        print(
            "usage: python -m engine.runs.worker RUN_DIR [--resume] | --join ROOT", file=sys.stderr
        )
        return 2
    # A lost terminal must never end a run (we are in our own session already; belt and braces).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from engine.core.errors import UserError
    from engine.runs.queue import after_run
    from engine.scaleout import distributed as dist
    from engine.training.train import run_training

    run_dir = Path(paths[0]).resolve() if paths else None
    if dist.init_process_group():
        from engine.scaleout.join import agree_on_run

        run_dir, resume = agree_on_run(run_dir, join_root, resume)
    assert run_dir is not None
    try:
        code = run_training(run_dir, resume=resume)
    except UserError as exc:  # refused before it wrote anything (e.g. another engine has the run)
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2
    finally:
        if dist.world_size() > 1:  # under torchrun: leave the gloo group cleanly
            import torch.distributed

            if torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
    if join_root is None and dist.world_size() <= 1:
        after_run(run_dir)  # the next queued run starts now, with or without a UI
    return code


if __name__ == "__main__":
    sys.exit(main())
