"""Headless commands: train, runs, resume, stop, predict, export. Exit 0 ok / 2 user error / 1 bug."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from engine.config import RunConfig, all_fields
from engine.errors import UserError
from engine.events import Event, read_events
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
        extra = {"nargs": "?", "const": "true"} if kind == "bool" else {}
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


def _add_sweep_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="NAME=V1,V2",
        help="queue one run per value (repeat for a grid), e.g. --sweep learning_rate=3e-4,1e-3",
    )


def _add_queue_parser(sub: Any) -> None:
    """`queue [list|add|rm|up|down|start]`."""
    queue = sub.add_parser("queue", help="runs waiting to start, one after another")
    qsub = queue.add_subparsers(dest="queue_command")
    qsub.add_parser("list", help="list the queue (the default)").add_argument(
        "--json", action="store_true"
    )
    add = qsub.add_parser("add", help="queue a run (same flags as train)")
    add.add_argument("--config", help="a TOML config (flags override its values)")
    _add_sweep_flag(add)
    _add_config_flags(add)
    for name, text in (
        ("rm", "cancel a queued run"),
        ("up", "move a queued run earlier"),
        ("down", "move a queued run later"),
    ):
        qsub.add_parser(name, help=text).add_argument("entry", help="its number or id")
    qsub.add_parser("start", help="start the first queued run unless one is training")


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
    _add_sweep_flag(train)
    _add_config_flags(train)
    _add_queue_parser(sub)

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
        action="store_true",
        help="causal-lm: also write a GGUF beside the merged model (needs a local llama.cpp)",
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
    from engine.checks import check_run
    from engine.hardware import resolve_precision
    from engine.model import check_model_source, resolve_model_name
    from engine.tasks import get_task

    resolve_precision(cfg.training.precision)
    get_task(cfg.task).prepare_data(cfg, None)
    check_model_source(resolve_model_name(cfg.model.model_name), cfg.model.allow_pickle_weights)
    check_run(cfg)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    return (
        f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


def format_event(e: Event) -> str | None:
    """A progress line for an event (None for events not worth a line)."""
    t = e.type
    if t == "step":
        parts = [f"step {e.step}/{e.total_steps}", f"epoch {e.epoch:.2f}"]
        if e.loss is not None:
            parts.append(f"loss {e.loss:.4f}")
        if e.learning_rate is not None:
            parts.append(f"lr {e.learning_rate:.2e}")
        if e.samples_per_s:
            parts.append(f"{e.samples_per_s:.1f} samples/s")
        if e.tokens_per_s:
            parts.append(f"{e.tokens_per_s:.0f} tok/s")
        parts.append(f"{_clock(e.elapsed_s)} elapsed, ETA {_clock(e.eta_s)}")
        return "  ".join(parts)
    if t == "eval":
        m = e.metrics
        shown = [
            f"{k} {m[k]:.4f}"
            for k in ("accuracy", "f1", "loss", "perplexity")
            if isinstance(m.get(k), float)
        ]
        return f"eval at step {e.step} (epoch {e.epoch:.2f}): " + ", ".join(shown)
    if t == "sample":
        return f"sample {e.index + 1}: {e.prompt[-60:]!r} -> {e.generated[:80]!r} (ref {e.reference[:40]!r})"
    if t == "phase":
        return f"[{e.name}]" + (f" {e.detail}" if e.detail else "")
    if t == "started":
        return (
            f"run {e.run_id}: {e.train_size} train / {e.eval_size} eval examples, "
            + (f"{len(e.labels)} labels, " if e.labels else "")
            + f"{e.total_steps} steps, {e.precision}, {e.threads} threads, "
            f"{e.trainable_params:,} of {e.total_params:,} parameters trained"
            + (
                f"; world size {e.world_size} ({e.nnodes} machine(s) x {e.nproc_per_node} "
                f"processes, batch {e.batch_size} x grad_accum {e.grad_accum} each)"
                if getattr(e, "world_size", 1) > 1
                else ""
            )
        )
    if t == "log":
        return f"{e.level}: {e.message}" if e.level != "info" else e.message
    if t == "checkpoint":
        return f"checkpoint saved: {e.path}"
    if t == "finished":
        acc = e.metrics.get("accuracy")
        score = f", accuracy {acc:.4f}" if isinstance(acc, float) else ""
        return f"finished at step {e.step}{score}; adapter in {e.output_dir}"
    if t == "stopped":
        return f"stopped at step {e.step} ({e.reason}); adapter in {e.output_dir}"
    if t == "failed":
        where = f"{e.where}: " if e.where else ""
        return f"error: {where}{e.message}" + (f" ({e.hint})" if e.hint else "")
    return None


def _printer(e: Event) -> None:
    line = format_event(e)
    if line:
        print(line, file=sys.stderr if e.type == "failed" else sys.stdout, flush=True)


def cmd_train(args: argparse.Namespace, root: Path) -> int:
    """Train headless (foreground, or detached with --detach)."""
    cfg = config_from_args(args)
    if args.save_config:
        cfg.save(args.save_config)
        print(f"config written to {args.save_config}")
        return 0
    check_inputs(cfg)
    if args.queue or args.sweep:
        return _queue_config(cfg, args.sweep, root)
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
    _ring(cfg.output.notify, run_dir)
    from engine.queue import after_run

    after_run(run_dir)
    if code == 2 and not any(e.type == "started" for e in read_events(run_dir)):
        # A setup mistake (e.g. a target module name): nothing ran, so leave no failed run behind.
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
    return code


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


def _ring(kind: str, run_dir: Path) -> None:
    """The bell or an OSC 9 notification when a foreground run ends (off by default)."""
    if kind == "off" or not sys.stdout.isatty():
        return
    from engine.runs import run_info

    state = run_info(run_dir).state
    text = f"finetune-tui: {run_dir.name} {state}"
    sys.stdout.write(f"\x1b]9;{text}\x07" if kind == "osc9" else "\a")
    sys.stdout.flush()


def _queue_config(cfg: RunConfig, sweep: list[str], root: Path) -> int:
    """Queue one config or a sweep's grid; start the first when no engine is busy."""
    from engine import queue

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
    from engine import queue

    sub = args.queue_command or "list"
    if sub == "add":
        cfg = config_from_args(args)
        check_inputs(cfg)
        return _queue_config(cfg, args.sweep, root)
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
            f"{t.batch_size:>5} {lo.lora_r:>4}  {e.sweep_id}"
        )
    return 0


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
    print(f"{'RUN':40} {'STATE':9} {'STEP':>11} {'BEST':>7} {'TIME':>8}  MODEL / DATA")
    for r in runs:
        best = f"{r.best_metric:.4f}" if r.best_metric is not None else "-"
        steps = f"{r.step}/{r.total_steps}"
        what = r.message if r.state == "unreadable" else f"{model_label(r.model)} / {r.data}"
        print(
            f"{r.run_id[:40]:40} {r.state:9} {steps:>11} {best:>7} {_clock(r.duration_s):>8}  "
            f"{what}"
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

    return run_training(run_dir, resume=True, listeners=[_printer])


def cmd_stop(args: argparse.Namespace, root: Path) -> int:
    """Ask a running engine to stop gracefully."""
    from engine.launch import request_stop
    from engine.runs import find_run

    run_dir = find_run(args.run, root)
    if not request_stop(run_dir):
        raise UserError("the run is not running", where=run_dir.name)
    print(f"asked {run_dir.name} to stop; it saves a checkpoint and the adapter first")
    return 0


def _weights_for(ref: str, root: Path) -> Path:
    from engine.predict import find_weights
    from engine.runs import find_run

    p = Path(ref).expanduser()
    if p.is_dir() and ((p / "adapter_config.json").is_file() or (p / "config.json").is_file()):
        return p
    return find_weights(find_run(ref, root))


def _newest_finished(root: Path) -> Path | None:
    from engine.runs import list_runs

    return next((r.path for r in list_runs(root) if r.state == "finished"), None)


def _predict_target(args: argparse.Namespace, root: Path) -> tuple[Path, list[str]]:
    """The weights to use and the texts: `predict "a sentence"` means the newest finished run."""
    texts = list(args.texts)
    if args.run:
        try:
            return _weights_for(args.run, root), texts
        except UserError:
            if Path(args.run).expanduser().exists() or texts:
                raise
            texts = [args.run]  # not a run: the first text
    newest = _newest_finished(root)
    if newest is None:
        raise UserError(
            "say which run to use",
            where=str(root),
            hint='predict RUN "a sentence" (finetune-tui runs lists them; no finished run yet)',
        )
    print(f"using the newest finished run {newest.name}", file=sys.stderr)
    from engine.predict import find_weights

    return find_weights(newest), texts


def cmd_predict(args: argparse.Namespace, root: Path) -> int:
    """Predict labels for texts or a file (a task with its own predict command runs that)."""
    from engine.predict import task_of
    from engine.tasks import get_task

    weights, texts = _predict_target(args, root)
    own = getattr(get_task(task_of(weights)), "predict_cli", None)
    if own is not None:
        args.texts = texts
        return own(args, weights)
    if args.file:
        from engine.readers import TEXT_NAMES, read_table
        from engine.tasks.classification.data import pick_column

        table = read_table(args.file, field_name="--file")
        col = pick_column(table.columns, args.text_column, TEXT_NAMES, "text", table, "text_column")
        texts += [str(r.get(col, "")) for r in table.rows]
    if not texts:
        raise UserError(
            "nothing to predict",
            hint='give texts, e.g. predict RUN "great film", or --file data.jsonl',
        )
    from engine.tasks.classification.predict import Predictor

    out_file = _check_out_file(Path(args.out), args.overwrite) if args.out else None
    predictor = Predictor(weights, threads=args.threads)
    preds = predictor.predict(texts)
    rows = [
        {"text": p.text, "label": p.label, **{f"p_{k}": v for k, v in p.probabilities.items()}}
        for p in preds
    ]
    if out_file is not None:
        from engine.atomic import atomic_write_text

        if out_file.suffix.lower() == ".csv":
            import csv
            import io

            buf = io.StringIO(newline="")
            w = csv.DictWriter(buf, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
            atomic_write_text(out_file, buf.getvalue())
        else:
            atomic_write_text(out_file, "".join(json.dumps(r) + "\n" for r in rows))
        print(f"{len(rows)} predictions written to {out_file}")
    elif args.file:
        for r in rows:
            print(json.dumps(r))
    else:
        for p in preds:
            probs = "  ".join(f"{k} {v:.3f}" for k, v in p.probabilities.items())
            print(f"{p.label:12} {probs}  | {p.text}")
    return 0


def _check_out_file(out: Path, overwrite: bool) -> Path:
    """Check a file to write before the work: not a folder, no silent overwrite, writable."""
    from engine.outputs import _check_writable

    out = out.expanduser()
    if out.is_dir():
        raise UserError("--out is a folder", where=str(out), hint="give a file name (.jsonl, .csv)")
    if out.exists() and not overwrite:
        raise UserError(
            "the file exists", where=str(out), hint="choose a new name, or add --overwrite"
        )
    _check_writable(out.parent, "--out")
    return out


def cmd_export(args: argparse.Namespace, root: Path) -> int:
    """Copy the adapter and/or write a merged model."""
    if not args.merged and not args.adapter:
        raise UserError("say what to export", hint="--adapter OUT and/or --merged OUT")
    from engine.predict import find_weights
    from engine.runs import find_run

    weights = find_weights(find_run(args.run, root))
    if args.adapter:
        from engine.export import copy_adapter

        print(f"adapter copied to {copy_adapter(weights, Path(args.adapter), args.overwrite)}")
    if args.merged:
        from engine.export import export_merged

        out = export_merged(weights, Path(args.merged), overwrite=args.overwrite)
        print(f"merged model written to {out}")
        if args.gguf:
            from engine.predict import task_of
            from engine.tasks import get_task

            gguf = getattr(get_task(task_of(weights)), "export_gguf", None)
            if gguf is None:
                raise UserError("GGUF is for language models", where="--gguf")
            print(f"GGUF written to {gguf(out, args.llama_cpp)}")
    elif args.gguf:
        raise UserError("--gguf converts the merged model", hint="add --merged OUT")
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


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse; an unknown flag gets its command's usage and a 'did you mean' line."""
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
