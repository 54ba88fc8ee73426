"""The Trainer every task shares: CPU arguments, step counts, quiet libraries, sample counting."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

from engine.config import RunConfig
from engine.rundir.runs import CHECKPOINTS_DIR


def quiet_libraries() -> None:
    """Silence the libraries' progress bars and warnings: our events say what happens."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("accelerate").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


class CountingDataset:
    """Wraps the training data so the callback can report samples/s and real tokens/s."""

    def __init__(self, data: Any, counter: Any) -> None:
        self.data = data
        self.counter = counter

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.data[i]
        # a preference pair is two rows (chosen and rejected): count both
        self.counter.add(len(item["input_ids"]) + len(item.get("rejected_input_ids", ())))
        return item

    def __getattr__(self, name: str) -> Any:
        # Length grouping asks the dataset for lengths; pass such look-ups through.
        if name in ("data", "counter"):
            raise AttributeError(name)
        return getattr(self.data, name)


def total_steps(n_train: int, cfg: RunConfig, scale: Any = None) -> int:
    """Optimizer steps the run will take (`scale`: the split over several processes)."""
    t = cfg.training
    if t.max_steps > 0:
        return t.max_steps
    batch, accum, world = (
        (scale.batch_size, scale.grad_accum, scale.world)
        if scale
        else (cfg.batch_size_for(n_train), t.grad_accum, 1)
    )
    # Each process takes every world-th batch of the shared order (accelerate's sharding).
    batches = math.ceil(math.ceil(n_train / batch) / world)
    per_epoch = max(1, math.ceil(batches / accum))
    return max(1, math.ceil(per_epoch * t.epochs))


def keeps_best(cfg: RunConfig, has_eval: bool) -> bool:
    """Whether the Trainer reloads the best checkpoint at the end."""
    t = cfg.training
    eval_strategy = t.eval_strategy if has_eval else "no"
    return (
        eval_strategy != "no"
        and t.save_strategy == eval_strategy
        and (eval_strategy != "steps" or t.save_steps % max(t.eval_steps, 1) == 0)
    )


def training_arguments(
    cfg: RunConfig, run_dir: Path, precision: str, has_eval: bool, **overrides: Any
) -> Any:
    """TrainingArguments for a CPU run (use_cpu always: else torchrun trains N copies).

    `overrides` (engine.scaleout.distributed.Scale.arguments) split the batch over several processes.
    """
    from transformers import TrainingArguments

    t = cfg.training
    eval_strategy = t.eval_strategy if has_eval else "no"
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
        "load_best_model_at_end": keeps_best(cfg, has_eval),
        # Also without kept checkpoints: early stopping watches this metric.
        "metric_for_best_model": cfg.best_metric if eval_strategy != "no" else None,
        "greater_is_better": (
            not cfg.best_metric.endswith("loss") if eval_strategy != "no" else None
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
        # LoRA leaves no parameter unused; Trainer's default for a PeftModel (True) costs an
        # extra graph walk per step under torchrun.
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


def build_trainer(
    model: Any,
    args: Any,
    train_data: Any,
    eval_data: Any | None,
    collator: Any,
    tokenizer: Any,
    hooks: Any,
    callbacks: list[Any],
) -> Any:
    """A Trainer without its printer, with a FLOP tally that does not re-walk the model per step."""
    from transformers.trainer_callback import PrinterCallback

    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=hooks.compute_metrics if eval_data is not None else None,
        preprocess_logits_for_metrics=hooks.preprocess_logits,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # our events replace its printed dicts
    # The Trainer's FLOP tally re-walks every module on every step (~2% of a step); count once.
    n_params = (
        model.num_parameters(exclude_embeddings=True) if hasattr(model, "num_parameters") else 0
    )
    trainer.floating_point_ops = lambda inputs: 6 * inputs["input_ids"].numel() * n_params
    return trainer


def _trainer_class() -> type:
    """Trainer whose length grouping asks the dataset for its lengths instead of reading every item,
    and pads less (engine.training.length_batches).

    The stock sampler reads every example once to measure it: for lazily tokenized big data that
    would tokenize everything before the first step.
    """
    from contextlib import nullcontext

    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from engine.training.length_batches import BucketedSampler

    class CpuTrainer(Trainer):
        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            data = train_dataset if train_dataset is not None else self.train_dataset
            lengths = getattr(data, "lengths", None)
            args = self.args
            if args.train_sampling_strategy != "group_by_length":
                return super()._get_train_sampler(train_dataset)
            if callable(lengths):
                measured = [int(n) for n in lengths()]
            else:
                found = super()._get_train_sampler(train_dataset)
                if args.world_size <= 1 or not isinstance(found, LengthGroupedSampler):
                    return found
                measured = found.lengths
            # Grouped over the global batch (x world size, not each process's share): N
            # processes then take, step by step, the examples one process takes at the same
            # global batch (accelerate hands rank r the r-th slice of each batch).
            return BucketedSampler(
                args.train_batch_size * args.gradient_accumulation_steps * args.world_size,
                measured,
            )

        def training_step(
            self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None
        ) -> Any:
            """A batch in parts of similar length (engine.tasks.causal_lm.step_parts; a task's
            own split, e.g. preference pairs, when the model carries one)."""
            meter = getattr(self, "token_meter", None)
            ids = inputs.get("input_ids") if hasattr(inputs, "get") else None  # BatchEncoding too
            if meter is not None and ids is not None:
                meter.padded += int(ids.numel())  # the thread probe's measure of the work
            tokens = getattr(self.model, "finetune_tui_part_tokens", 0)
            split = getattr(self.model, "finetune_tui_split_batch", None)
            if split is not None:
                parts = split(inputs)
            elif not tokens or num_items_in_batch is None:  # parts need the whole batch's count
                return super().training_step(model, inputs, num_items_in_batch)
            else:
                from engine.tasks.causal_lm.step_parts import split_batch

                parts = split_batch(inputs, tokens, getattr(self.data_collator, "multiple", 1))
            total = None
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                with nullcontext() if last else self.accelerator.no_sync(model):
                    loss = super().training_step(model, part, num_items_in_batch)
                total = loss if total is None else total + loss
            return total

        def _get_eval_sampler(self, eval_dataset: Any) -> Any:
            lengths = getattr(eval_dataset, "lengths", None)
            if self.args.train_sampling_strategy != "group_by_length" or not callable(lengths):
                return super()._get_eval_sampler(eval_dataset)
            import torch

            return LengthGroupedSampler(
                self.args.eval_batch_size,
                lengths=[int(n) for n in lengths()],
                generator=torch.Generator().manual_seed(self.args.seed),
            )

    return CpuTrainer
