"""One training run in this process: data -> model -> Trainer on CPU -> adapter, all as events."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
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
    QuietWriter,
    Started,
    Step,
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
    """Train the run in `run_dir`; returns 0 done/stopped, 2 user error, 1 internal error."""
    from engine import distributed as dist

    run_dir = Path(run_dir).resolve()
    multi = dist.init_process_group()  # under torchrun: the status pid stays the supervisor's
    main = dist.is_main()
    # Only rank 0 writes events and status; the others tell in-process listeners only.
    writer = EventWriter(run_dir) if main else QuietWriter(run_dir)
    writer.listeners.extend(listeners)
    resume = resume or dist.restart_count() > 0  # torchrun restarted us: continue, not redo
    import psutil

    def status(**values: Any) -> None:
        if main:
            write_status(run_dir, **values)

    if multi:
        status(state="running")
    else:
        status(pid=os.getpid(), pid_start=psutil.Process().create_time(), state="running")
    if main:
        (run_dir / STOP_FILE).unlink(missing_ok=True)
    try:
        outcome = _train(run_dir, writer, resume)
        status(state=outcome)
        return 0
    except UserError as exc:
        writer.emit(
            Failed(
                message=exc.message, hint=exc.hint, where=exc.where or exc.field, user_error=True
            )
        )
        status(state="failed")
        return 2
    except MemoryError:
        writer.emit(Failed(message="out of memory", hint="lower batch_size or max_length"))
        status(state="failed")
        return 1
    except Exception as exc:  # an internal error: keep the traceback in engine.log
        if multi:  # every rank shares engine.log through torchrun's output
            print(f"rank {dist.rank()}: {traceback.format_exc()}", file=sys.stderr, flush=True)
        else:
            with open(run_dir / LOG_FILE, "a", encoding="utf-8") as fh:
                fh.write(traceback.format_exc())
        if multi and _lost_contact(exc):
            # Another process died first (kill -9, out of memory): say so, or wait for the restart.
            if dist.restarts_left():
                writer.emit(Log(level="warning", message="a training process died: restarting"))
                return 1
            writer.emit(
                Failed(
                    message=f"lost contact with another training process ({type(exc).__name__})",
                    hint=f"resume continues from the last checkpoint; see {run_dir / LOG_FILE}",
                )
            )
            status(state="failed")
            return 1
        writer.emit(
            Failed(
                message=f"{type(exc).__name__}: {exc}",
                hint=f"the full traceback is in {run_dir / LOG_FILE}",
            )
        )
        status(state="failed")
        return 1


def _lost_contact(exc: BaseException) -> bool:
    """True for the gloo errors a process gets when a peer process dies."""
    text = f"{type(exc).__name__} {exc}".lower()
    return any(w in text for w in ("gloo", "connection", "distbackend", "peer", "socket"))


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("accelerate").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def _train(run_dir: Path, writer: EventWriter, resume: bool) -> str:
    from engine import distributed as dist
    from engine.data import load_splits
    from engine.hardware import resolve_precision, tune_allocator

    tune_allocator()
    cfg = RunConfig.load(run_dir / CONFIG_FILE).validate()
    t_cfg = cfg.training
    precision = resolve_precision(t_cfg.precision)
    world = dist.world_size()
    threads = dist.threads_per_process(t_cfg.threads, dist.local_world_size())
    if world > 1:
        dist.pin_to_cores(dist.local_rank(), dist.local_world_size(), threads)
    batch_size, grad_accum = dist.split_batch(t_cfg.batch_size, t_cfg.grad_accum, world)
    checkpoint = _agreed_checkpoint(run_dir) if resume else None
    if resume and checkpoint is None:
        writer.emit(Log(level="warning", message="no checkpoint to resume from: starting over"))

    writer.emit(Phase(name="loading data"))
    with dist.in_turn():  # one process writes the caches, the others then read them
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
    # The classification head ignores num_items_in_batch: without this the Trainer multiplies
    # the loss (and the gradient) by grad_accum and by the world size (transformers#47688).
    # The Trainer reads it from the base model under the PeftModel.
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.accepts_loss_kwargs = False

    writer.emit(Phase(name="tokenizing"))
    with dist.in_turn():
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
    args = _training_arguments(
        cfg,
        run_dir,
        precision,
        has_eval,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        save_on_each_node=world > 1 and not dist.shared_run_dir(run_dir),
        **({"ddp_backend": "gloo"} if world > 1 else {}),  # a backend makes one process init one
    )
    elapsed_offset = _previous_elapsed(run_dir) if checkpoint else 0.0
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
    total_steps = _total_steps(len(train_data), cfg, batch_size, grad_accum, world)
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
            world_size=world,
            nnodes=max(1, world // max(1, dist.local_world_size())),
            nproc_per_node=dist.local_world_size(),
            batch_size=batch_size,
            grad_accum=grad_accum,
        )
    )
    writer.emit(
        Log(
            message=(
                f"{len(train_data)} train / {len(eval_data) if has_eval else 0} eval examples "
                f"({splits.eval_source}); LoRA on {', '.join(loaded.target_modules)}; "
                f"training {', '.join(loaded.modules_to_save) or 'no extra modules'}; "
                f"{precision}, {threads} threads, {loaded.attention} attention"
                + (
                    f"; {world} processes x batch {batch_size} x grad_accum {grad_accum}"
                    if world > 1
                    else ""
                )
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

    if dist.is_main():
        save_adapter(trainer.model, tokenizer, out, cfg, splits.id2label, metrics, loaded.name)
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
        if dist.is_main():
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


def _previous_elapsed(run_dir: Path) -> float:
    steps = [e for e in read_events(run_dir) if isinstance(e, Step)]
    return steps[-1].elapsed_s if steps else 0.0


def _total_steps(
    n_train: int, cfg: RunConfig, batch_size: int = 0, grad_accum: int = 0, world: int = 1
) -> int:
    t = cfg.training
    if t.max_steps > 0:
        return t.max_steps
    import math

    batches = math.ceil(math.ceil(n_train / (batch_size or t.batch_size)) / max(1, world))
    per_epoch = max(1, math.ceil(batches / (grad_accum or t.grad_accum)))
    return max(1, math.ceil(per_epoch * t.epochs))


def _agreed_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint every process has (each machine may keep its own copies)."""
    from engine import distributed as dist

    mine = last_checkpoint(run_dir)
    step = dist.min_rank(_step_of(mine) if mine else -1)
    if step < 0:
        if dist.any_rank(mine is not None)[0]:
            dist.barrier()  # some machine has one, another none: starting over is the only match
        return None
    path = run_dir / CHECKPOINTS_DIR / f"checkpoint-{step}"
    if dist.any_rank(not (path / "trainer_state.json").is_file())[0]:
        raise UserError(
            f"not every machine has checkpoint-{step}",
            where=str(run_dir / CHECKPOINTS_DIR),
            hint="copy that checkpoint folder to the machines that lack it, or start over",
        )
    return path


def _training_arguments(
    cfg: RunConfig, run_dir: Path, precision: str, has_eval: bool, **overrides: Any
) -> Any:
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
        # Scale-out: gloo is the CPU backend; LoRA leaves no parameter unused, and Trainer's
        # default for a PeftModel (find_unused_parameters) costs an extra graph walk per step.
        "ddp_find_unused_parameters": False,
        **overrides,
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
