"""Headless commands: train, runs, resume, stop, predict, export. Exit 0 ok / 2 user error / 1 bug."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from engine.cli_queue import add_queue_parser, add_sweep_flag, cmd_queue, queue_config
from engine.cli_weights import cmd_export, cmd_predict
from engine.config import RunConfig, all_fields
from engine.errors import UserError
from engine.event_lines import clock, format_event  # noqa: F401 (API)
from engine.event_lines import printer as _printer
from engine.events import read_events
from engine.model import model_label

COMMANDS = ("train", "runs", "resume", "stop", "predict", "export", "preflight", "join", "queue")


# TrainingArguments' names, typed by habit, as aliases of our fields.
HF_ALIASES = {
    "epochs": ("num_train_epochs",),
    "batch_size": ("per_device_train_batch_size",),
    "grad_accum": ("gradient_accumulation_steps",),
    "lr_scheduler": ("lr_scheduler_type",),
    "model_name": ("model_name_or_path",),
    "metric_for_best": ("metric_for_best_model",),
    "threads": ("torch_threads",),
}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per config field (`--lora_r`, `--lora-r` and HF aliases), defaulting to 'not given'."""
    for section, f in all_fields():
        names = (f.name, *HF_ALIASES.get(f.name, ()))
        flags = [f"--{n}" for n in names] + [f"--{n.replace('_', '-')}" for n in names if "_" in n]
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        # A switch with an auto setting (gradient_checkpointing) also takes the bare flag as true.
        switch = kind == "bool" or "true" in f.metadata.get("choices", ())
        extra = {"nargs": "?", "const": "true"} if switch else {}
        parser.add_argument(
            *flags,
            dest=f"{section}.{f.name}",
            default=None,
            metavar=kind.upper(),
            help=f"{f.metadata['help']} [{f.default}]",
            **extra,
        )
    for flag in ("fp16", "bf16", "fp32"):  # TrainingArguments' precision switches
        parser.add_argument(
            f"--{flag}",
            dest="training.precision",
            action="store_const",
            const=flag,
            help=f"same as --precision {flag}"
            + (" (refused: CPUs do not train fp16)" if flag == "fp16" else ""),
        )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every headless command."""
    # No abbreviations: a typo such as --learning_rat must be an error, not a silent guess.
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="finetune-tui",
        description="Fine-tune Hugging Face models with LoRA on a CPU. "
        "With no command, opens the terminal UI.",
    )
    parser.add_argument(
        "--runs-root",
        "--runs_root",
        dest="runs_root",
        default=None,
        help="folder of run directories (default: $FINETUNE_TUI_RUNS or the user data folder)",
    )
    sub = parser.add_subparsers(dest="command")

    train = sub.add_parser("train", allow_abbrev=False, help="train headless, printing progress")
    train.add_argument("--config", help="a TOML config (flags override its values)")
    train.add_argument("--task", help="classification or causal-lm [classification]")
    train.add_argument(
        "--save-config",
        "--save_config",
        dest="save_config",
        help="write the resolved config to this TOML file and exit",
    )
    train.add_argument(
        "--detach", action="store_true", help="run the engine in the background and return at once"
    )
    train.add_argument(
        "--queue",
        action="store_true",
        help="add to the run queue instead (starts at once when no run is training)",
    )
    add_sweep_flag(train)
    _add_config_flags(train)
    add_queue_parser(sub)

    pre = sub.add_parser(
        "preflight",
        allow_abbrev=False,
        help="time a few steps: speed, run-time and memory estimate",
    )
    pre.add_argument("--config")
    pre.add_argument("--task", help="classification or causal-lm [classification]")
    pre.add_argument("--steps", type=int, default=6, help="timed steps [6]")
    _add_config_flags(pre)

    sub.add_parser("runs", allow_abbrev=False, help="list runs").add_argument(
        "--json", action="store_true"
    )

    res = sub.add_parser(
        "resume", allow_abbrev=False, help="continue a run from its last checkpoint"
    )
    res.add_argument("run", nargs="?", help="run id (or unique part of it); default newest")
    res.add_argument("--detach", action="store_true")

    stop = sub.add_parser(
        "stop", allow_abbrev=False, help="ask a running run to stop (saves first)"
    )
    stop.add_argument("run", nargs="?")

    pred = sub.add_parser("predict", allow_abbrev=False, help="predict labels with a run's adapter")
    pred.add_argument(
        "run", nargs="?", help="run id, adapter folder or merged model folder (default: newest)"
    )
    pred.add_argument("texts", nargs="*", help="texts to classify")
    pred.add_argument("--file", help="a data file of texts (JSON / JSONL / CSV / TSV / Parquet)")
    pred.add_argument("--text-column", "--text_column", dest="text_column", default="")
    pred.add_argument("--out", help="write predictions here (.jsonl or .csv); default stdout")
    pred.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    pred.add_argument("--threads", type=int, default=0)
    pred.add_argument(
        "--max_new_tokens", "--max-new-tokens", type=int, default=128, help="causal-lm [128]"
    )
    pred.add_argument("--temperature", type=float, default=0.0, help="causal-lm: 0 = greedy [0]")
    pred.add_argument("--top_p", "--top-p", type=float, default=1.0, help="causal-lm [1.0]")
    pred.add_argument("--system", default="", help="causal-lm: a system prompt")
    pred.add_argument(
        "--column_map", "--column-map", default="", help="causal-lm: as data.column_map"
    )

    join = sub.add_parser(
        "join", help="let this machine take part in a run started on machine 0 (several machines)"
    )
    join.add_argument("address", metavar="HOST:PORT", help="machine 0's master_addr:master_port")
    join.add_argument("--node_rank", "--node-rank", type=int, required=True, help="1..nnodes-1")
    join.add_argument("--nnodes", type=int, required=True, help="machines in all, with machine 0")
    join.add_argument("--nproc", default="1", help="training processes on this machine [1]")
    join.add_argument("--threads", type=int, default=None, help="threads per process [cores/nproc]")
    join.add_argument(
        "--gloo_socket_ifname", "--gloo-socket-ifname", default=None, help="network interface"
    )
    join.add_argument("--max_restarts", "--max-restarts", type=int, default=None)
    join.add_argument("--detach", action="store_true", help="run in the background")

    exp = sub.add_parser(
        "export", allow_abbrev=False, help="copy the adapter and/or write a merged model"
    )
    exp.add_argument("run")
    exp.add_argument("--merged", metavar="OUT", help="write a merged full model to OUT")
    exp.add_argument("--adapter", metavar="OUT", help="copy the adapter folder to OUT")
    exp.add_argument(
        "--overwrite", action="store_true", help="write into a folder that holds other files"
    )
    exp.add_argument(
        "--gguf",
        nargs="?",
        const="",
        default=None,
        metavar="OUT",
        help="causal-lm: the merged model as OUT/model.gguf + an Ollama Modelfile (needs the "
        "gguf extra; a bare --gguf beside --merged runs a local llama.cpp converter instead)",
    )
    exp.add_argument(
        "--gguf_lora",
        "--gguf-lora",
        metavar="OUT",
        help="causal-lm: the adapter alone as OUT/adapter.gguf (a GGUF LoRA) over OUT/base.gguf",
    )
    exp.add_argument(
        "--gguf_base",
        "--gguf-base",
        metavar="FILE",
        help="with --gguf_lora: use this base model GGUF instead of writing OUT/base.gguf",
    )
    exp.add_argument(
        "--gguf_type",
        "--gguf-type",
        default="bf16",
        choices=["bf16", "f16", "q8_0", "q4_k_m", "f32"],
        help="GGUF weights: bf16 (default), f16, q8_0, q4_k_m (llama.cpp's quantizer), f32",
    )
    exp.add_argument(
        "--llama-cpp",
        "--llama_cpp",
        dest="llama_cpp",
        default="",
        help="llama.cpp folder or its convert_hf_to_gguf.py [$FINETUNE_TUI_LLAMA_CPP]",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The config file (if any) with every given flag applied on top, validated."""
    cfg = RunConfig.load(args.config) if getattr(args, "config", None) else RunConfig()
    if getattr(args, "task", None):
        cfg.task = args.task
    for key, value in vars(args).items():
        if "." in key and value is not None:
            cfg.set(key, value)
    return cfg.validate()


def check_inputs(cfg: RunConfig) -> None:
    """Fail fast on bad data, model paths or outputs, before a run directory is made."""
    from engine.checks import check_model_task, check_run
    from engine.hardware import resolve_precision
    from engine.model import check_model_source, resolve_model_name
    from engine.tasks import get_task

    check_model_task(cfg.model.model_name, cfg.task)  # before the data is read: it is quick
    resolve_precision(cfg.training.precision)
    get_task(cfg.task).prepare_data(cfg, None)
    check_model_source(resolve_model_name(cfg.model.model_name), cfg.model.allow_pickle_weights)
    check_run(cfg)


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
    from engine.runs import new_run_dir

    if args.detach:
        from engine.launch import launch

        run_dir = launch(cfg, root)
        print(
            f"started {run_dir.name} in the background; follow it with: finetune-tui attach "
            f"{run_dir.name}"
        )
        return 0
    run_dir = new_run_dir(cfg, root)
    print(f"run directory: {run_dir}", flush=True)
    from engine.torchrun import world_of

    if world_of(cfg) > 1:
        return follow_engine(run_dir)
    from engine.train import run_training

    code = run_training(run_dir, listeners=[_printer])
    say_how_to_resume(run_dir)
    ring(cfg.output.notify, run_dir)
    from engine.queue import after_run

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

    from engine.events import EventReader
    from engine.launch import request_stop, spawn_engine
    from engine.runs import engine_alive

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
    from engine.join import join_config, run_join

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
    from engine.runs import run_info

    state = run_info(run_dir).state
    text = f"finetune-tui: {run_dir.name} {state}"
    sys.stdout.write(f"\x1b]9;{text}\x07" if kind == "osc9" else "\a")
    sys.stdout.flush()


def cmd_runs(args: argparse.Namespace, root: Path) -> int:
    """List the runs under the root."""
    from engine.runs import list_runs

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
    from engine.launch import check_resume
    from engine.runs import find_run

    run_dir = find_run(args.run, root)
    check_resume(run_dir)
    if args.detach:
        from engine.launch import resume

        resume(run_dir)
        print(f"resumed {run_dir.name} in the background")
        return 0
    from engine.torchrun import world_of

    if world_of(RunConfig.load(run_dir / "config.toml")) > 1:
        return follow_engine(run_dir, resume=True)
    from engine.train import run_training

    code = run_training(run_dir, resume=True, listeners=[_printer])
    say_how_to_resume(run_dir)
    return code


def cmd_stop(args: argparse.Namespace, root: Path) -> int:
    """Ask a running engine to stop gracefully."""
    from engine.launch import request_stop
    from engine.runs import find_run

    run_dir = find_run(args.run, root)
    if not request_stop(run_dir):
        raise UserError("the run is not running", where=run_dir.name)
    print(f"asked {run_dir.name} to stop; it saves a checkpoint and the adapter first")
    return 0


def cmd_preflight(args: argparse.Namespace, root: Path) -> int:
    """Time a few training steps and estimate the whole run."""
    from engine.preflight import preflight

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
    from engine.runs import runs_root

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
        from engine.atomic import is_disk_full

        where = exc.filename or ""
        what = "out of disk space" if is_disk_full(exc) else (exc.strerror or str(exc))
        print(f"error: {where}: {what}" if where else f"error: {what}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
