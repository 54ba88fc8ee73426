"""The `predict` and `export` commands: which weights, which texts, where the output goes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.core.errors import UserError


def weights_for(ref: str, root: Path) -> Path:
    """A run reference (id, prefix or folder) -> the adapter or checkpoint to use."""
    from engine.rundir.runs import find_run
    from engine.rundir.weights import find_weights

    p = Path(ref).expanduser()
    if p.is_dir() and ((p / "adapter_config.json").is_file() or (p / "config.json").is_file()):
        return p
    return find_weights(find_run(ref, root))


def _newest_finished(root: Path) -> Path | None:
    from engine.rundir.runs import list_runs

    return next((r.path for r in list_runs(root) if r.state == "finished"), None)


def _predict_target(args: argparse.Namespace, root: Path) -> tuple[Path, list[str]]:
    """The weights to use and the texts: `predict "a sentence"` means the newest finished run."""
    texts = list(args.texts)
    if args.run:
        try:
            return weights_for(args.run, root), texts
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
    from engine.rundir.weights import find_weights

    return find_weights(newest), texts


def cmd_predict(args: argparse.Namespace, root: Path) -> int:
    """Predict labels for texts or a file (a task with its own predict command runs that)."""
    from engine.rundir.weights import task_of
    from engine.tasks import get_task

    weights, texts = _predict_target(args, root)
    own = getattr(get_task(task_of(weights)), "predict_cli", None)
    if own is not None:
        args.texts = texts
        return own(args, weights)
    if args.file:
        from engine.data.readers import TEXT_NAMES, read_table
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

    out_file = check_out_file(Path(args.out), args.overwrite) if args.out else None
    predictor = Predictor(weights, threads=args.threads)
    preds = predictor.predict(texts)
    rows = [
        {"text": p.text, "label": p.label, **{f"p_{k}": v for k, v in p.probabilities.items()}}
        for p in preds
    ]
    if out_file is not None:
        from engine.core.atomic import atomic_write_text

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


def check_out_file(out: Path, overwrite: bool) -> Path:
    """Check a file to write before the work: not a folder, no silent overwrite, writable."""
    from engine.rundir.outputs import _check_writable

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
    """Copy the adapter, write a merged model, and/or write GGUFs for llama.cpp and Ollama."""
    gguf_out = args.gguf or ""  # a folder; "" is the bare legacy flag beside --merged
    lora_out = getattr(args, "gguf_lora", None)
    if args.gguf == "" and not args.merged:
        raise UserError("say where the GGUF goes", where="--gguf", hint="--gguf OUT (a new folder)")
    if getattr(args, "gguf_base", None) and not lora_out:
        raise UserError("--gguf_base is the base for --gguf_lora", hint="add --gguf_lora OUT")
    if not (args.merged or args.adapter or gguf_out or lora_out):
        raise UserError(
            "say what to export",
            hint="--adapter OUT, --merged OUT, --gguf OUT and/or --gguf_lora OUT",
        )
    from engine.rundir.runs import find_run
    from engine.rundir.weights import find_weights

    weights = find_weights(find_run(args.run, root))
    if gguf_out or lora_out:
        _check_gguf_task(weights)
    if args.adapter:
        from engine.tasks.export import copy_adapter

        print(f"adapter copied to {copy_adapter(weights, Path(args.adapter), args.overwrite)}")
    if args.merged:
        from engine.tasks.export import export_merged

        out = export_merged(weights, Path(args.merged), overwrite=args.overwrite)
        print(f"merged model written to {out}")
        if args.gguf == "":
            from engine.rundir.weights import task_of
            from engine.tasks import get_task

            gguf = getattr(get_task(task_of(weights)), "export_gguf", None)
            if gguf is None:
                raise UserError("GGUF is for language models", where="--gguf")
            print(f"GGUF written to {gguf(out, args.llama_cpp)}")
    if gguf_out:
        from engine.tasks.causal_lm.gguf_export import MODEL_FILE, export_gguf

        out = export_gguf(
            weights, Path(gguf_out), args.gguf_type, overwrite=args.overwrite, report=_progress
        )
        print(
            f"\nGGUF written to {out / MODEL_FILE} (Ollama: ollama create NAME -f {out}/Modelfile)"
        )
    if lora_out:
        from engine.tasks.causal_lm.gguf_export import LORA_FILE, export_gguf_lora

        base = Path(args.gguf_base) if args.gguf_base else None
        out = export_gguf_lora(
            weights,
            Path(lora_out),
            args.gguf_type,
            base,
            overwrite=args.overwrite,
            report=_progress,
        )
        print(
            f"\nGGUF LoRA written to {out / LORA_FILE} (Ollama: ollama create NAME -f {out}/Modelfile)"
        )
    return 0


def _check_gguf_task(weights: Path) -> None:
    from engine.config.tasks import GENERATIVE_TASKS
    from engine.rundir.weights import task_of

    if task_of(weights) not in GENERATIVE_TASKS:
        raise UserError(
            "GGUF is for language models (causal-lm and preference runs)", where="--gguf"
        )


def _progress(fraction: float, note: str) -> None:
    """One rewritten status line on a terminal's stderr while a GGUF is written."""
    if sys.stderr.isatty():
        print(f"\r{fraction:4.0%} {note:<40}", end="", file=sys.stderr, flush=True)
