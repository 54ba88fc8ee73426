"""From command-line flags to a RunConfig: one flag per config field, and the checks before a run."""

from __future__ import annotations

import argparse
from typing import Any

from engine.config import RunConfig, all_fields

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


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per config field (`--lora_r`, `--lora-r` and HF aliases), defaulting to 'not given'."""
    for section, f in all_fields():
        names = (f.name, *HF_ALIASES.get(f.name, ()))
        flags = [f"--{n}" for n in names] + [f"--{n.replace('_', '-')}" for n in names if "_" in n]
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        # A switch with an auto setting (gradient_checkpointing) also takes the bare flag as true.
        switch = kind == "bool" or "true" in f.metadata.get("choices", ())
        extra: dict[str, Any] = {"nargs": "?", "const": "true"} if switch else {}
        parser.add_argument(
            *flags,
            dest=f"{section}.{f.name}",
            default=None,
            metavar=kind.upper(),
            help=f"{f.metadata['help']} [{f.default}]".replace("%", "%%"),  # argparse formats %
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
    from engine.core.hardware import resolve_precision
    from engine.models.checks import check_model_task, check_run
    from engine.models.loading import check_model_source, resolve_model_name
    from engine.tasks import get_task

    check_model_task(cfg.model.model_name, cfg.task)  # before the data is read: it is quick
    resolve_precision(cfg.training.precision, cfg.model.base_precision)
    get_task(cfg.task).prepare_data(cfg, None)
    check_model_source(resolve_model_name(cfg.model.model_name), cfg.model.allow_pickle_weights)
    check_run(cfg)
