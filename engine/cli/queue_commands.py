"""The `queue` command, `--sweep`, and the bell when a foreground run ends."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from engine.config import RunConfig
from engine.core.errors import UserError


def add_sweep_flag(parser: argparse.ArgumentParser) -> None:
    """`--sweep NAME=V1,V2` (repeatable): queue the grid instead of training."""
    parser.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="NAME=V1,V2",
        help="queue one run per value (repeat for a grid), e.g. --sweep learning_rate=3e-4,1e-3",
    )


def add_queue_parser(sub: Any) -> None:
    """`queue [list|add|rm|up|down|start]`."""
    from engine.cli.config_flags import add_config_flags

    queue = sub.add_parser("queue", help="runs waiting to start, one after another")
    qsub = queue.add_subparsers(dest="queue_command")
    qsub.add_parser("list", help="list the queue (the default)").add_argument(
        "--json", action="store_true"
    )
    add = qsub.add_parser("add", help="queue a run (same flags as train)")
    add.add_argument("--config", help="a TOML config (flags override its values)")
    add_sweep_flag(add)
    add_config_flags(add)
    for name, text in (
        ("rm", "cancel a queued run"),
        ("up", "move a queued run earlier"),
        ("down", "move a queued run later"),
    ):
        qsub.add_parser(name, help=text).add_argument("entry", help="its number or id")
    qsub.add_parser("start", help="start the first queued run unless one is training")


def queue_config(cfg: RunConfig, sweep: list[str], root: Path) -> int:
    """Queue one config or a sweep's grid; start the first when no engine is busy."""
    from engine.runs import queue

    values: dict[str, list[Any]] = {}
    for item in sweep:
        name, sep, text = item.partition("=")
        if not sep:
            raise UserError(
                f"--sweep {item}: expected NAME=V1,V2", hint="e.g. --sweep learning_rate=3e-4,1e-3"
            )
        values[name.strip()] = queue.parse_values(name.strip(), text)
    added = queue.add_sweep(root, cfg, values) if values else [queue.add(root, cfg)]
    what = f"sweep {added[0].sweep_id}: {len(added)} runs" if values else "1 run"
    print(f"queued {what}: " + ", ".join(e.name for e in added))
    started = queue.start_next(root)
    if started is not None:
        print(f"started {started.name} (nothing else was training)")
    else:
        print("it starts when the current run ends; 'finetune-tui queue' shows the line")
    return 0


def cmd_queue(args: argparse.Namespace, root: Path) -> int:
    """List, add, cancel, reorder or start queued runs."""
    from engine.runs import queue

    sub = args.queue_command or "list"
    if sub == "add":
        from engine.cli.config_flags import check_inputs, config_from_args

        cfg = config_from_args(args)
        check_inputs(cfg)
        return queue_config(cfg, args.sweep, root)
    if sub in ("rm", "up", "down"):
        if sub == "rm":
            entry = queue.remove(root, args.entry)
            print(f"cancelled {entry.entry_id} ({entry.name})")
        else:
            entry = queue.move(root, args.entry, -1 if sub == "up" else 1)
            print(f"moved {entry.entry_id} ({entry.name}) {sub}")
        return 0
    if sub == "start":
        busy = queue.busy_run(root)
        started = queue.start_next(root)
        if started is not None:
            print(f"started {started.name}")
        elif busy is not None:
            print(f"{busy.name} is training; the queue goes on when it ends")
        else:
            print("the queue is empty")
        return 0
    current = queue.entries(root)
    if getattr(args, "json", False):
        rows = [
            {"n": n, "id": e.entry_id, "name": e.name, "sweep_id": e.sweep_id, "added": e.added}
            for n, e in enumerate(current, start=1)
        ]
        print(json.dumps(rows, indent=2))
        return 0
    if not current:
        print(f"the queue is empty ({queue.queue_dir(root)})")
        return 0
    print(f"{'#':>3} {'ID':6}  {'NAME':40} {'LR':>8} {'EPOCHS':>6} {'BATCH':>5} {'R':>4}  SWEEP")
    for n, e in enumerate(current, start=1):
        t, lo = e.config.training, e.config.lora
        print(
            f"{n:>3} {e.entry_id:6}  {e.name[:40]:40} {t.learning_rate:>8g} {t.epochs:>6g} "
            f"{t.batch_size or 'auto':>5} {lo.lora_r:>4}  {e.sweep_id}"
        )
    return 0
