"""One training run in this process: data -> model -> Trainer on CPU -> adapter, all as events."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.config import RunConfig
from engine.errors import UserError
from engine.events import (
    Event,
    EventWriter,
    Failed,
    Finished,
    Log,
    Phase,
    Started,
    Stopped,
    read_events,
)
from engine.runs import CHECKPOINTS_DIR, CONFIG_FILE, LOG_FILE, STOP_FILE, adapter_dir, write_status


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, if any."""
    folder = run_dir / CHECKPOINTS_DIR
    if not folder.is_dir():
        return None
    found = []
    for p in folder.glob("checkpoint-*"):
        if (p / "trainer_state.json").is_file():
            try:
                found.append((int(p.name.split("-")[-1]), p))
            except ValueError:
                continue
    return max(found)[1] if found else None


def run_training(
    run_dir: str | Path, *, resume: bool = False, listeners: list[Callable[[Event], None]] = ()
) -> int:
    """Train the run in `run_dir`; returns 0 done/stopped, 2 user error or full disk, 1 bug.

    Before anything is written the engine takes the run's lock (one engine per run) and, on a
    resume, refuses a finished run or an unreadable config with a UserError that changes nothing.
    """
    from engine.runs import acquire_run_lock

    run_dir = Path(run_dir).resolve()
    lock = acquire_run_lock(run_dir)  # raises UserError when another engine has the run
    try:
        if resume:
            _check_resume(run_dir)
        return _run_locked(run_dir, resume, listeners)
    finally:
        from engine.hardware import set_engine_threads

        set_engine_threads(None)
        lock.release()


def _check_resume(run_dir: Path) -> None:
    """A resume that cannot go anywhere is refused before it writes a thing."""
    from engine.checks import check_run
    from engine.runs import check_not_finished

    check_not_finished(run_dir)  # liveness needs no check: we hold the run's lock
    cfg = RunConfig.load(run_dir / CONFIG_FILE).validate()
    check_run(cfg, run_dir)


def _run_locked(run_dir: Path, resume: bool, listeners: list[Callable[[Event], None]]) -> int:
    from engine import diskfull

    writer = EventWriter(run_dir)
    writer.listeners.extend(listeners)
    reserve = diskfull.Reserve(run_dir)
    try:
        import psutil

        reserve.make()
        write_status(
            run_dir, pid=os.getpid(), pid_start=psutil.Process().create_time(), state="running"
        )
        (run_dir / STOP_FILE).unlink(missing_ok=True)
        _claim_threads(run_dir, writer)
        if not resume:
            from engine.checks import check_run

            check_run(RunConfig.load(run_dir / CONFIG_FILE).validate(), run_dir)
        outcome = _train(run_dir, writer, resume)
        write_status(run_dir, state=outcome, pid=None)  # done: no engine works on the run
        return 0
    except UserError as exc:
        _fail(
            run_dir,
            writer,
            Failed(
                message=exc.message, hint=exc.hint, where=exc.where or exc.field, user_error=True
            ),
        )
        return 2
    except KeyboardInterrupt:  # Ctrl-C before training began (the callback handles it after)
        _fail(run_dir, writer, Failed(message="interrupted", hint="resume starts it again"))
        raise
    except MemoryError:
        _fail(
            run_dir, writer, Failed(message="out of memory", hint="lower batch_size or max_length")
        )
        return 1
    except Exception as exc:
        full = diskfull.disk_full_failure(exc, run_dir)
        if full is not None:  # a full disk is no bug: one clear message, no traceback
            reserve.release()  # room for the failed event and the status
            diskfull.drop_incomplete_checkpoints(run_dir)
            _fail(run_dir, writer, full)
            return 2
        try:  # an internal error: keep the traceback in engine.log
            with open(run_dir / LOG_FILE, "a", encoding="utf-8") as fh:
                fh.write(traceback.format_exc())
        except OSError:
            pass
        _fail(
            run_dir,
            writer,
            Failed(
                message=f"{type(exc).__name__}: {exc}",
                hint=f"the full traceback is in {run_dir / LOG_FILE}",
            ),
        )
        return 1
    finally:
        reserve.release()


def _claim_threads(run_dir: Path, writer: EventWriter) -> None:
    """Take this engine's share of the cores (engine.cores) and say so when it is not all."""
    from engine.cores import claim_threads

    try:
        requested = RunConfig.load(run_dir / CONFIG_FILE).training.threads
    except UserError:
        return  # _train reports the config
    plan = claim_threads(requested, run_dir)
    if plan.note:
        writer.emit(Log(level="warning", message=plan.note))


def _fail(run_dir: Path, writer: EventWriter, event: Failed) -> None:
    """Record a failure without ever raising: the event if it can be written, the status always."""
    try:
        writer.emit(event)
    except OSError:  # the disk is full even now: tell the listeners (the CLI's printer) anyway
        for listener in writer.listeners:
            listener(event)
    with contextlib.suppress(OSError):
        write_status(
            run_dir,
            in_place_fallback=True,
            state="failed",
            message=event.message,
            hint=event.hint,
            pid=None,
        )


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("accelerate").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def _train(run_dir: Path, writer: EventWriter, resume: bool) -> str:
    from engine.data import load_splits
    from engine.hardware import resolve_precision, resolve_threads, tune_allocator

    tune_allocator()
    cfg = RunConfig.load(run_dir / CONFIG_FILE).validate()
    t_cfg = cfg.training
    precision = resolve_precision(t_cfg.precision)
    threads = resolve_threads(t_cfg.threads)
    checkpoint = last_checkpoint(run_dir) if resume else None
    if resume and checkpoint is None:
        writer.emit(Log(level="warning", message="no checkpoint to resume from: starting over"))

    writer.emit(Phase(name="loading data"))
    splits = load_splits(cfg.data, seed=t_cfg.seed)

    writer.emit(Phase(name="loading model"))
    import torch

    torch.set_num_threads(threads)
    _quiet_libraries()
    from transformers import DataCollatorWithPadding, Trainer, set_seed

    from engine.callback import EventsCallback, Throughput
    from engine.encoding import encode_cached
    from engine.metrics import classification_metrics
    from engine.model import load_for_training

    set_seed(t_cfg.seed)
    loaded = load_for_training(cfg, splits.id2label, precision)
    model, tokenizer = loaded.model, loaded.tokenizer

    writer.emit(Phase(name="tokenizing"))
    train_data, hit = encode_cached(
        run_dir,
        "train",
        tokenizer,
        loaded.name,
        splits.train_texts,
        splits.train_labels,
        cfg.model.max_length,
    )
    eval_data = None
    if splits.eval_texts:
        eval_data, _ = encode_cached(
            run_dir,
            "eval",
            tokenizer,
            loaded.name,
            splits.eval_texts,
            splits.eval_labels,
            cfg.model.max_length,
        )
    if hit:
        writer.emit(Log(message="reused the cached tokenization"))

    counter = Throughput()
    train_data = _CountingDataset(train_data, counter)
    detail: dict[str, Any] = {}

    def compute_metrics(pred: Any) -> dict[str, float]:
        import numpy as np

        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        result = classification_metrics(pred.label_ids, np.argmax(logits, axis=-1), splits.id2label)
        detail.clear()
        detail.update({k: v for k, v in result.items() if not isinstance(v, float)})
        return {k: v for k, v in result.items() if isinstance(v, float)}

    has_eval = eval_data is not None and len(eval_data) > 0
    args = _training_arguments(cfg, run_dir, precision, has_eval)
    elapsed_offset = _previous_elapsed(run_dir, _step_of(checkpoint)) if checkpoint else 0.0
    callback = EventsCallback(
        writer, run_dir, counter, detail, t_cfg.checkpoint_minutes, elapsed_offset
    )
    callback.install_signal_handlers()
    callbacks: list[Any] = [callback]
    if t_cfg.early_stopping_patience and has_eval:
        from transformers import EarlyStoppingCallback

        callbacks.append(EarlyStoppingCallback(t_cfg.early_stopping_patience))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_data if has_eval else None,
        # Multiples of 8 bound the number of distinct shapes (kernel caches, memory) at little cost.
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8),
        processing_class=tokenizer,
        compute_metrics=compute_metrics if has_eval else None,
        callbacks=callbacks,
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # our events replace its printed dicts
    # The Trainer's FLOP tally re-walks every module on every step (~2% of a step); count once.
    n_params = (
        model.num_parameters(exclude_embeddings=True) if hasattr(model, "num_parameters") else 0
    )
    trainer.floating_point_ops = lambda inputs: 6 * inputs["input_ids"].numel() * n_params
    total_steps = _total_steps(len(train_data), cfg)
    trainable, total = model.get_nb_trainable_parameters()
    writer.emit(
        Started(
            run_id=run_dir.name,
            model=loaded.name,
            task=cfg.task,
            config=cfg.to_dict(),
            train_size=len(train_data),
            eval_size=len(eval_data) if has_eval else 0,
            labels=[splits.id2label[i] for i in sorted(splits.id2label)],
            precision=precision,
            threads=threads,
            total_steps=total_steps,
            trainable_params=int(trainable),
            total_params=int(total),
            resumed_from_step=_step_of(checkpoint),
            pid=os.getpid(),
        )
    )
    writer.emit(
        Log(
            message=(
                f"{len(train_data)} train / {len(eval_data) if has_eval else 0} eval examples "
                f"({splits.eval_source}); LoRA on {', '.join(loaded.target_modules)}; "
                f"training {', '.join(loaded.modules_to_save) or 'no extra modules'}; "
                f"{precision}, {threads} threads, {loaded.attention} attention"
            )
        )
    )
    t0 = time.monotonic()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    stopped = callback.stop_requested and trainer.state.global_step < trainer.state.max_steps
    ended_early = trainer.state.global_step < trainer.state.max_steps
    if not stopped and ended_early and t_cfg.early_stopping_patience:
        writer.emit(
            Log(
                message=(
                    f"stopped early at step {trainer.state.global_step}: {t_cfg.metric_for_best} "
                    f"did not improve for {t_cfg.early_stopping_patience} evaluations"
                )
            )
        )

    out = adapter_dir(run_dir, cfg)
    metrics: dict[str, Any] = {}
    if has_eval and not stopped:
        kept = "best checkpoint" if args.load_best_model_at_end else "final model"
        writer.emit(Phase(name="evaluating", detail=kept))
        metrics = _final_metrics(trainer, detail)
    writer.emit(Phase(name="saving"))
    from engine.export import save_adapter

    save_adapter(
        trainer.model, tokenizer, out, cfg, splits.id2label, metrics, loaded.name, run_dir=run_dir
    )
    step = trainer.state.global_step
    if stopped:
        writer.emit(
            Stopped(
                step=step,
                output_dir=str(out),
                reason=callback.stop_reason,
                checkpoint=str(last_checkpoint(run_dir) or ""),
            )
        )
        (run_dir / STOP_FILE).unlink(missing_ok=True)
        return "stopped"
    writer.emit(
        Finished(
            step=step,
            output_dir=str(out),
            metrics=metrics,
            elapsed_s=round(elapsed_offset + time.monotonic() - t0, 2),
        )
    )
    return "finished"


class _CountingDataset:
    """Wraps the training data so the callback can report samples/s and real tokens/s."""

    def __init__(self, data: Any, counter: Any) -> None:
        self.data = data
        self.counter = counter

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.data[i]
        self.counter.add(len(item["input_ids"]))
        return item


def _final_metrics(trainer: Any, detail: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the final (best, when kept) model once more for the record."""
    raw = trainer.evaluate()
    metrics = {
        k.removeprefix("eval_"): v
        for k, v in raw.items()
        if isinstance(v, (int, float)) and k != "epoch"
    }
    metrics.update(detail)
    return metrics


def _step_of(checkpoint: Path | None) -> int:
    return int(checkpoint.name.split("-")[-1]) if checkpoint else 0


def _previous_elapsed(run_dir: Path, step: int) -> float:
    from engine.events import elapsed_at_step

    return elapsed_at_step(read_events(run_dir), step)


def _total_steps(n_train: int, cfg: RunConfig) -> int:
    t = cfg.training
    if t.max_steps > 0:
        return t.max_steps
    import math

    per_epoch = max(1, math.ceil(math.ceil(n_train / t.batch_size) / t.grad_accum))
    return max(1, math.ceil(per_epoch * t.epochs))


def _training_arguments(cfg: RunConfig, run_dir: Path, precision: str, has_eval: bool) -> Any:
    from transformers import TrainingArguments

    t = cfg.training
    eval_strategy = t.eval_strategy if has_eval else "no"
    keep_best = (
        eval_strategy != "no"
        and t.save_strategy == eval_strategy
        and (eval_strategy != "steps" or t.save_steps % max(t.eval_steps, 1) == 0)
    )
    wanted: dict[str, Any] = {
        "output_dir": str(run_dir / CHECKPOINTS_DIR),
        "per_device_train_batch_size": t.batch_size,
        "per_device_eval_batch_size": max(t.batch_size, 32),
        "gradient_accumulation_steps": t.grad_accum,
        "learning_rate": t.learning_rate,
        "weight_decay": t.weight_decay,
        "lr_scheduler_type": t.lr_scheduler,
        "num_train_epochs": t.epochs,
        "max_steps": t.max_steps if t.max_steps > 0 else -1,
        "use_cpu": True,
        "bf16": precision == "bf16",
        "eval_strategy": eval_strategy,
        "eval_steps": t.eval_steps or None,
        "save_strategy": t.save_strategy,
        "save_steps": t.save_steps or 500,
        "save_total_limit": t.save_total_limit,
        "load_best_model_at_end": keep_best,
        # Also without kept checkpoints: early stopping watches this metric.
        "metric_for_best_model": t.metric_for_best if eval_strategy != "no" else None,
        "greater_is_better": (
            not t.metric_for_best.endswith("loss") if eval_strategy != "no" else None
        ),
        "logging_strategy": "steps",
        "logging_steps": t.logging_steps,
        "logging_first_step": True,
        "report_to": "none",
        "disable_tqdm": True,
        "seed": t.seed,
        "dataloader_num_workers": 0,
        "remove_unused_columns": False,
        "label_names": ["labels"],
        "save_safetensors": True,
    }
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    if "train_sampling_strategy" in names:  # transformers 5
        wanted["train_sampling_strategy"] = "group_by_length" if t.group_by_length else "random"
    else:  # transformers 4
        wanted["group_by_length"] = t.group_by_length
    if "warmup_ratio" in names:
        wanted["warmup_ratio"] = t.warmup_ratio
    else:
        wanted["warmup_steps"] = t.warmup_ratio
    return TrainingArguments(**{k: v for k, v in wanted.items() if k in names})


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """Save metrics as JSON."""
    path.write_text(json.dumps(metrics, indent=2), encoding="utf-8")
