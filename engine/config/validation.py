"""What is wrong with a config: every bad field, each with how to fix it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engine.config.sections import (
    ATTENTION,
    BASE_PRECISIONS,
    CHECKPOINTING,
    MEMORY_MODES,
    NOTIFY,
    PRECISIONS,
    PREFERENCE_LOSSES,
    SCHEDULERS,
    STRATEGIES,
    TRACKERS,
    DistributedConfig,
)
from engine.config.tasks import TASK_NAMES, task_metrics

if TYPE_CHECKING:
    from engine.config.run_config import RunConfig


def config_problems(cfg: RunConfig) -> dict[str, str]:
    """Every bad field of a config with a message that says how to fix it (empty when valid)."""
    p: dict[str, str] = {}
    m, d, lo, t = cfg.model, cfg.data, cfg.lora, cfg.training
    if cfg.task not in TASK_NAMES:
        p["task"] = f"task must be one of {', '.join(TASK_NAMES)} (got '{cfg.task}')"
    if m.max_length != 0 and not 8 <= m.max_length <= 8192:
        p["model.max_length"] = "max_length must be 0 (auto) or between 8 and 8192"
    if t.gradient_checkpointing not in CHECKPOINTING:
        p["training.gradient_checkpointing"] = (
            f"gradient_checkpointing must be auto, true or false (got '{t.gradient_checkpointing}')"
        )
    if t.memory_mode not in MEMORY_MODES:
        p["training.memory_mode"] = (
            f"memory_mode must be auto, fast or lean (got '{t.memory_mode}')"
        )
    if m.attention not in ATTENTION:
        p["model.attention"] = f"attention must be one of {', '.join(ATTENTION)}"
    p.update(base_precision_problems(cfg))
    if not 0.0 <= d.validation_fraction < 0.9:
        p["data.validation_fraction"] = "validation_fraction must be in [0, 0.9), e.g. 0.1"
    if d.max_train_rows < 0:
        p["data.max_train_rows"] = "max_train_rows must be 0 (all) or a positive count"
    if d.max_eval_rows < 0:
        p["data.max_eval_rows"] = "max_eval_rows must be 0 (all) or a positive count"
    if not 1 <= lo.lora_r <= 1024:
        p["lora.lora_r"] = "lora_r must be between 1 and 1024 (8 or 16 is typical)"
    if not 0.0 <= lo.lora_layers <= 1.0:
        p["lora.lora_layers"] = (
            "lora_layers must be between 0 and 1: 1 = every layer, 0.5 = top half, 0 = auto"
        )
    if lo.lora_alpha <= 0:
        p["lora.lora_alpha"] = "lora_alpha must be positive (often 2 x r)"
    if not 0.0 <= lo.lora_dropout < 1.0:
        p["lora.lora_dropout"] = "lora_dropout must be in [0, 1)"
    if not lo.target_modules.strip():
        p["lora.target_modules"] = "target_modules is empty: use 'auto' or a list of names"
    if t.epochs <= 0 and t.max_steps <= 0:
        p["training.epochs"] = "epochs must be positive (or set max_steps)"
    if t.max_steps < 0:
        p["training.max_steps"] = "max_steps must be 0 (use epochs) or positive"
    if not 0 <= t.batch_size <= 4096:
        p["training.batch_size"] = "batch_size must be 0 (auto) or between 1 and 4096"
    if t.grad_accum < 1:
        p["training.grad_accum"] = "grad_accum must be at least 1"
    if not 0 < t.learning_rate < 1:
        p["training.learning_rate"] = "learning_rate must be between 0 and 1, e.g. 1e-3"
    if t.weight_decay < 0:
        p["training.weight_decay"] = "weight_decay must not be negative"
    if not 0 <= t.warmup_ratio < 1:
        p["training.warmup_ratio"] = "warmup_ratio must be in [0, 1)"
    if t.lr_scheduler not in SCHEDULERS:
        p["training.lr_scheduler"] = (
            f"lr_scheduler must be one of {', '.join(SCHEDULERS)} (got '{t.lr_scheduler}')"
        )
    metrics = task_metrics(cfg.task)
    if t.metric_for_best not in ("auto", *metrics):
        p["training.metric_for_best"] = (
            f"metric_for_best must be auto or one of {', '.join(metrics)} for {cfg.task} "
            f"(got '{t.metric_for_best}')"
        )
    if t.precision not in PRECISIONS:
        p["training.precision"] = f"precision must be one of auto, bf16, fp32 (got '{t.precision}')"
    elif t.precision == "fp16":
        p["training.precision"] = (
            "fp16 does not train on a CPU (no loss scaling; accelerate ignores it): "
            "use auto, bf16 or fp32"
        )
    if not 0 <= t.model_dropout < 1:
        p["training.model_dropout"] = "model_dropout must be in [0, 1)"
    if t.threads < 0:
        p["training.threads"] = "threads must be 0 (auto) or a positive count"
    for name in ("eval_strategy", "save_strategy"):
        if getattr(t, name) not in STRATEGIES:
            p[f"training.{name}"] = f"{name} must be one of {', '.join(STRATEGIES)}"
    if t.eval_strategy == "steps" and t.eval_steps <= 0:
        p["training.eval_steps"] = "eval_steps must be positive when eval_strategy is 'steps'"
    if t.save_strategy == "steps" and t.save_steps <= 0:
        p["training.save_steps"] = "save_steps must be positive when save_strategy is 'steps'"
    if t.checkpoint_minutes < 0:
        p["training.checkpoint_minutes"] = "checkpoint_minutes must be 0 (off) or positive"
    if t.save_total_limit < 1:
        p["training.save_total_limit"] = "save_total_limit must be at least 1"
    if t.early_stopping_patience < 0:
        p["training.early_stopping_patience"] = "early_stopping_patience must be 0 (off) or more"
    if t.early_stopping_patience and t.eval_strategy == "no":
        p["training.early_stopping_patience"] = "early stopping needs evaluation (eval_strategy)"
    if cfg.output.notify not in NOTIFY:
        p["output.notify"] = f"notify must be one of {', '.join(NOTIFY)}"
    if t.logging_steps < 1:
        p["training.logging_steps"] = "logging_steps must be at least 1"
    p.update(tracker_problems(t.report_to))
    if t.preference_loss not in PREFERENCE_LOSSES:
        p["training.preference_loss"] = (
            f"preference_loss must be dpo or orpo (got '{t.preference_loss}')"
        )
    if not 0 < t.beta <= 100:
        p["training.beta"] = "beta must be positive (0.1 is typical for DPO and ORPO)"
    if lo.init_adapter.strip() and cfg.task == "classification":
        p["lora.init_adapter"] = "init_adapter is for causal-lm and preference runs: clear it"
    elif lo.init_adapter.strip():
        problem = init_adapter_problem(lo.init_adapter)
        if problem:
            p["lora.init_adapter"] = problem
    p.update(distributed_problems(cfg.distributed))
    nproc, total = cfg.distributed.nproc.strip(), t.batch_size * t.grad_accum
    # batch_size 0 (auto) picks a batch that the processes share evenly
    if nproc.isdigit() and "distributed.nproc" not in p and total > 0:
        world = int(nproc) * max(1, cfg.distributed.nnodes)
        if total % world:
            # Every world size keeps the global batch (batch x grad_accum) of one step.
            p["distributed.nproc"] = (
                f"{world} processes cannot share the global batch of {total} "
                f"(batch_size x grad_accum) evenly: use a count that divides {total}"
            )
    return p


def tracker_names(report_to: str) -> list[str]:
    """The trackers a report_to text names, in order ('none' or empty = none)."""
    names = [n.strip().lower() for n in report_to.split(",") if n.strip()]
    return [] if names in ([], ["none"]) else list(dict.fromkeys(names))


def tracker_problems(report_to: str) -> dict[str, str]:
    """An unknown or not installed tracker in report_to, with the pip command that fixes it."""
    import importlib.util

    names = tracker_names(report_to)
    unknown = [n for n in names if n not in TRACKERS and n != "none"]
    if unknown or "none" in names:
        bad = ", ".join(unknown) or "none beside a tracker"
        return {
            "training.report_to": f"report_to: unknown tracker '{bad}': use none or a comma list "
            f"of {', '.join(TRACKERS)}"
        }
    missing = [n for n in names if importlib.util.find_spec(TRACKERS[n]) is None]
    if missing:
        extras = ",".join(missing)
        return {
            "training.report_to": f"report_to: {', '.join(missing)} is not installed here: "
            f"pip install 'finetune-tui[{extras}]' (or pip install {' '.join(missing)})"
        }
    return {}


def distributed_problems(d: DistributedConfig) -> dict[str, str]:
    """The bad scale-out settings, each with how to fix it."""
    p: dict[str, str] = {}
    nproc = d.nproc.strip().lower()
    if nproc != "auto" and not (nproc.isdigit() and 1 <= int(nproc) <= 1024):
        p["distributed.nproc"] = (
            f"nproc must be 'auto' or a count of processes, e.g. 2 (got '{d.nproc}')"
        )
    if not 1 <= d.nnodes <= 1024:
        p["distributed.nnodes"] = "nnodes must be at least 1 (1 = this machine only)"
    elif not 0 <= d.node_rank < d.nnodes:
        p["distributed.node_rank"] = (
            f"node_rank must be in 0..{d.nnodes - 1} (0 = the machine that runs the run)"
        )
    if not d.master_addr.strip():
        p["distributed.master_addr"] = (
            "master_addr is empty: give machine 0's address, e.g. 10.0.0.5"
        )
    if not 1024 <= d.master_port <= 65535:
        p["distributed.master_port"] = (
            "master_port must be a free TCP port in 1024..65535, e.g. 29500"
        )
    if d.max_restarts < 0:
        p["distributed.max_restarts"] = "max_restarts must be 0 (off) or more"
    return p


def base_precision_problems(cfg: RunConfig) -> dict[str, str]:
    """A base_precision that is not a choice, or that does not go with the task or precision."""
    base, field = cfg.model.base_precision, "model.base_precision"
    if base not in BASE_PRECISIONS:
        return {field: f"base_precision must be one of {', '.join(BASE_PRECISIONS)} (got '{base}')"}
    if base in ("int8", "int4") and cfg.task not in ("causal-lm", "preference"):
        return {
            field: f"base_precision {base} is for causal-lm and preference; use auto for {cfg.task}"
        }
    if base == "bf16" and cfg.training.precision == "fp32":
        return {field: "base_precision bf16 trains in bf16: set precision auto or bf16"}
    if base == "fp32" and cfg.training.precision == "bf16":
        return {field: "precision bf16 stores the base in bf16: set base_precision auto or bf16"}
    return {}


def init_adapter_folder(setting: str) -> Path:
    """The adapter folder an init_adapter setting names (a run directory: its final adapter)."""
    path = Path(setting).expanduser()
    if (path / "adapter_config.json").is_file():
        return path
    for sub in ("adapter", "output"):
        if (path / sub / "adapter_config.json").is_file():
            return path / sub
    return path


def init_adapter_problem(setting: str) -> str:
    """What is wrong with an init_adapter setting ('' when it names an adapter)."""
    folder = init_adapter_folder(setting)
    if not folder.exists():
        return f"init_adapter: no such folder {setting}: give a run directory or an adapter folder"
    if not (folder / "adapter_config.json").is_file():
        return (
            f"init_adapter: {setting} holds no adapter (adapter_config.json): give a finished "
            "run's directory or its adapter folder"
        )
    return ""
