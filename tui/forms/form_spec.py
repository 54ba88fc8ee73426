"""Which settings the setup form shows on which tab, and their special editors and texts."""

from __future__ import annotations

from typing import Any

TABS = {
    "model": (
        "Model",
        ["model_name", "max_length"],
        ["base_precision", "attention", "trust_remote_code", "allow_pickle_weights"],
    ),
    "data": (
        "Data",
        ["data_file_path", "text_column", "label_column"],
        [
            "eval_file_path",
            "validation_fraction",
            "max_train_rows",
            "max_eval_rows",
            "data_split",
            "eval_split",
            "data_config",
            "label_names",
            "column_map",
        ],
    ),
    "lora": (
        "LoRA",
        ["lora_r", "lora_alpha", "lora_dropout", "use_dora", "use_rslora"],
        ["lora_layers", "modules_to_save", "train_chat_tokens", "init_adapter"],
    ),
    "training": (
        "Training",
        [
            "epochs",
            "batch_size",
            "grad_accum",
            "learning_rate",
            "precision",
            "threads",
            "eval_strategy",
            "save_strategy",
            "output_dir",
            "overwrite",
            "run_name",
        ],
        [
            "nproc",
            "max_steps",
            "eval_steps",
            "save_steps",
            "logging_steps",
            "warmup_ratio",
            "weight_decay",
            "lr_scheduler",
            "model_dropout",
            "group_by_length",
            "train_on_prompt",
            "preference_loss",
            "beta",
            "gradient_checkpointing",
            "memory_mode",
            "checkpoint_minutes",
            "save_total_limit",
            "metric_for_best",
            "early_stopping_patience",
            "seed",
            "notify",
            "report_to",
            "logging_dir",
            "tracking_uri",
            "tracker_project",
        ],
    ),
}
TAB_OF = {name: tab for tab, (_, main, more) in TABS.items() for name in main + more}
TAB_OF["target_modules"] = "lora"
MODEL_KEYS = ("model_name", "trust_remote_code", "allow_pickle_weights")
# Every data-tab setting (and the seed, which draws the held-out share) re-reads the data.
DATA_KEYS = (*TABS["data"][1], *TABS["data"][2], "seed")
PLACEHOLDERS = {
    "model_name": "empty = the built-in default (all-MiniLM-L6-v2)",
    "data_file_path": "path or Hub id (empty = example)",
    "eval_file_path": "empty = hold out a share of the training data",
    "output_dir": "empty = inside the run folder",
    "run_name": "empty = from model and data names",
    "nproc": "1; 2 or more = several processes (torchrun); auto = one per 8 physical cores",
}


def field_options() -> dict[str, dict[str, Any]]:
    """Per-field editor options that depend on this machine (precision, threads) or the data."""
    from engine.core.hardware import available_cores, describe_auto_precision

    special: dict[str, dict[str, Any]] = {
        "precision": {
            "options": [
                (f"auto → {describe_auto_precision().split()[0]}", "auto"),
                ("bf16", "bf16"),
                ("fp32", "fp32"),
            ],
            "help": f"auto here = {describe_auto_precision()}; fp16 does not train on a CPU",
        },
        "base_precision": {
            "options": [(name, name) for name in ("auto", "fp32", "bf16", "int8", "int4")],
            "help": base_precision_help(),
        },
        "threads": {"help": f"Torch threads (0 = auto: timed, up to {available_cores()} cores)"},
        "overwrite": {"help": "Write into an output folder that holds other files"},
        "text_column": {"options": [("auto", "")]},
        "label_column": {"options": [("auto", "")]},
    }
    return special


def base_precision_help() -> str:
    """The base_precision field's help: the choices and the largest model that fits here."""
    from engine.core.hardware import describe_auto_precision, free_memory_bytes
    from engine.tasks.causal_lm.base_precision import fits_line

    compute = "bf16" if describe_auto_precision().startswith("bf16") else "fp32"
    return (
        "causal-lm: the frozen base's storage; auto = full precision if a step fits in half "
        "the free RAM, else int8, else int4; " + fits_line(free_memory_bytes(), compute)
    )
