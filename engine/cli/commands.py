"""Headless commands: train, runs, resume, stop, predict, export. Exit 0 ok / 2 user error / 1 bug."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from engine.cli.config_flags import check_inputs, config_from_args
from engine.cli.event_lines import clock
from engine.cli.event_lines import printer as _printer
from engine.cli.parser import build_parser
from engine.cli.predict_export import cmd_export, cmd_predict
from engine.cli.queue_commands import cmd_queue, queue_config
from engine.config import RunConfig
from engine.core.errors import UserError
from engine.models.loading import model_label
from engine.rundir.events import read_events


def cmd_train(args: argparse.Namespace, root: Path) -> int:
    """Train headless (foreground, or detached with --detach)."""
    cfg = config_from_args(args)
    if args.save_config:
        cfg.save(args.save_config)
        print(f"config written to {args.save_config}")
        return 0
    check_inputs(cfg)
    if args.queue or args.sweep:
        return queue_config(cfg, args.sweep, root)
    from engine.rundir.runs import new_run_dir

    if args.detach:
        from engine.runs.launch import launch

        run_dir = launch(cfg, root)
        print(
            f"started {run_dir.name} in the background; follow it with: finetune-tui attach "
            f"{run_dir.name}"
        )
        return 0
    run_dir = new_run_dir(cfg, root)
    print(f"run directory: {run_dir}", flush=True)
    from engine.scaleout.torchrun import world_of

    if world_of(cfg) > 1:
        return follow_engine(run_dir)
    from engine.training.train import run_training

    code = run_training(run_dir, listeners=[_printer])
    say_how_to_resume(run_dir)
    ring(cfg.output.notify, run_dir)
    from engine.runs.queue import after_run

    after_run(run_dir)
    if code == 2 and not any(e.type == "started" for e in read_events(run_dir)):
        # A setup mistake (e.g. a target module name): nothing ran, so leave no failed run behind.
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
    return code


def say_how_to_resume(run_dir: Path) -> None:
    """After a run that stopped (Ctrl-C, `stop`): print the command that continues it."""
    events = read_events(run_dir) if (Path(run_dir) / "events.jsonl").is_file() else []
    if events and events[-1].type == "stopped":
        print(f"continue it with: finetune-tui resume {Path(run_dir).name}", flush=True)


def follow_engine(run_dir: Path, *, resume: bool = False) -> int:
    """Run the engine in the background (torchrun) and print its events until it ends.

    Ctrl-C asks for a graceful stop (every process saves) and keeps following.
    """
    import time

    from engine.rundir.events import EventReader
    from engine.rundir.runs import engine_alive
    from engine.runs.launch import request_stop, spawn_engine

    spawn_engine(run_dir, resume=resume)
    reader = EventReader(run_dir)
    last = None
    while True:
        try:
            alive = engine_alive(run_dir)
            for e in reader.read_new():
                _printer(e)
                last = e
            if not alive:
                for e in reader.read_new():
                    _printer(e)
                    last = e
                break
            time.sleep(0.3)
        except KeyboardInterrupt:
            request_stop(run_dir)
            print("stopping: every process saves first", file=sys.stderr, flush=True)
    say_how_to_resume(run_dir)
    if last is not None and last.type in ("finished", "stopped"):
        return 0
    return 2 if getattr(last, "user_error", False) else 1


def cmd_join(args: argparse.Namespace, root: Path) -> int:
    """Take part in a run on machine 0 with this machine's processes."""
    from engine.scaleout.join import join_config, run_join

    cfg = join_config(
        args.address,
        args.node_rank,
        args.nnodes,
        args.nproc,
        threads=args.threads,
        gloo_socket_ifname=args.gloo_socket_ifname,
        max_restarts=args.max_restarts,
    )
    return run_join(cfg, root, detach=args.detach)


def ring(kind: str, run_dir: Path) -> None:
    """The bell or an OSC 9 notification when a foreground run ends (off by default)."""
    if kind == "off" or not sys.stdout.isatty():
        return
    from engine.rundir.runs import run_info

    state = run_info(run_dir).state
    text = f"finetune-tui: {run_dir.name} {state}"
    sys.stdout.write(f"\x1b]9;{text}\x07" if kind == "osc9" else "\a")
    sys.stdout.flush()


def cmd_runs(args: argparse.Namespace, root: Path) -> int:
    """List the runs under the root."""
    from engine.rundir.runs import list_runs

    runs = list_runs(root)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": r.run_id,
                        "state": r.state,
                        "model": r.model,
                        "data": r.data,
                        "step": r.step,
                        "total_steps": r.total_steps,
                        "best": r.best_metric,
                        "best_metric": r.metric_name,
                        "started": r.started_at,
                        "duration_s": round(r.duration_s, 1),
                        "path": str(r.path),
                        "message": r.message,
                    }
                    for r in runs
                ],
                indent=2,
            )
        )
        return 0
    if not runs:
        print(f"no runs under {root}")
        return 0
    print(f"{'RUN':40} {'STATE':9} {'STEP':>11} {'BEST':>15} {'TIME':>8}  MODEL / DATA")
    for r in runs:
        name = r.metric_name.removeprefix("eval_")
        best = f"{name} {r.best_metric:.4f}" if r.best_metric is not None else "-"
        steps = f"{r.step}/{r.total_steps}"
        what = r.message if r.state == "unreadable" else f"{model_label(r.model)} / {r.data}"
        print(
            f"{r.run_id[:40]:40} {r.state:9} {steps:>11} {best:>15} {clock(r.duration_s):>8}  {what}"
        )
    return 0


def cmd_resume(args: argparse.Namespace, root: Path) -> int:
    """Continue a run from its last checkpoint."""
    from engine.rundir.runs import find_run
    from engine.runs.launch import check_resume

    run_dir = find_run(args.run, root)
    check_resume(run_dir)
    if args.detach:
        from engine.runs.launch import resume

        resume(run_dir)
        print(f"resumed {run_dir.name} in the background")
        return 0
    from engine.scaleout.torchrun import world_of

    if world_of(RunConfig.load(run_dir / "config.toml")) > 1:
        return follow_engine(run_dir, resume=True)
    from engine.training.train import run_training

    code = run_training(run_dir, resume=True, listeners=[_printer])
    say_how_to_resume(run_dir)
    return code


def cmd_stop(args: argparse.Namespace, root: Path) -> int:
    """Ask a running engine to stop gracefully."""
    from engine.rundir.runs import find_run
    from engine.runs.launch import request_stop

    run_dir = find_run(args.run, root)
    if not request_stop(run_dir):
        raise UserError("the run is not running", where=run_dir.name)
    print(f"asked {run_dir.name} to stop; it saves a checkpoint and the adapter first")
    return 0


def cmd_preflight(args: argparse.Namespace, root: Path) -> int:
    """Time a few training steps and estimate the whole run."""
    from engine.training.preflight import preflight

    cfg = config_from_args(args)
    check_inputs(cfg)
    report = preflight(cfg, steps=args.steps)
    for line in report.lines():
        print(line)
    return 0


HANDLERS = {
    "train": cmd_train,
    "runs": cmd_runs,
    "resume": cmd_resume,
    "stop": cmd_stop,
    "predict": cmd_predict,
    "export": cmd_export,
    "preflight": cmd_preflight,
    "join": cmd_join,
    "queue": cmd_queue,
}


_NEGATIVE = re.compile(r"^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$", re.IGNORECASE)


def join_negative_values(argv: list[str]) -> list[str]:
    """`--learning_rate -1e-3` as `--learning_rate=-1e-3`, so the value reaches its check.

    argparse takes '-1e-3' for an option (only plain '-1' / '-0.5' pass as numbers) and would
    print the whole usage with "expected one argument" instead of the range message.
    """
    out: list[str] = []
    for arg in argv:
        if out and _NEGATIVE.match(arg) and out[-1].startswith("--") and "=" not in out[-1]:
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse; an unknown flag gets its command's usage and a 'did you mean' line."""
    argv = join_negative_values(list(sys.argv[1:] if argv is None else argv))
    args, extra = parser.parse_known_args(argv)
    if not extra:
        return args
    import difflib

    sub = _subparser(parser, args.command) or parser
    known = [o for a in sub._actions for o in a.option_strings if o.startswith("--")]
    unknown = next((e for e in extra if e.startswith("-")), extra[0])
    guess = difflib.get_close_matches(unknown.split("=")[0], known, n=1)
    hint = f"; did you mean {guess[0]}?" if guess else f"; '{sub.prog} --help' lists the flags"
    sub.error(f"unrecognized argument: {unknown}{hint}")
    raise AssertionError("unreachable")  # pragma: no cover - error() exits


def _subparser(parser: argparse.ArgumentParser, name: str | None) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            return action.choices[name]
    return None


def main(argv: list[str] | None = None) -> int:
    """Run a headless command; user mistakes print one line and exit 2."""
    parser = build_parser()
    args = _parse(parser, argv)
    if not args.command:
        parser.print_help()
        return 0
    from engine.rundir.runs import runs_root

    try:
        return HANDLERS[args.command](args, runs_root(args.runs_root))
    except UserError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `finetune-tui runs --json | head`: the reader left; say nothing more.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # the machine, not a bug: a full disk, a folder gone, no permission
        from engine.core.atomic import is_disk_full

        where = exc.filename or ""
        what = "out of disk space" if is_disk_full(exc) else (exc.strerror or str(exc))
        print(f"error: {where}: {what}" if where else f"error: {what}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
