"""The sections of a run's settings (model, data, lora, training, distributed, output) and their choices."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PRECISIONS = ("auto", "bf16", "fp32", "fp16")
STRATEGIES = ("epoch", "steps", "no")
ATTENTION = ("auto", "eager", "sdpa")
BASE_PRECISIONS = ("auto", "fp32", "bf16", "int8", "int4")
# Learning-rate schedules that run with no extra arguments (transformers' SchedulerType values).
SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
)
NOTIFY = ("off", "bell", "osc9")
CHECKPOINTING = ("auto", "true", "false")
MEMORY_MODES = ("auto", "fast", "lean")
# Experiment trackers report_to may name (comma-separated), and the module each one needs.
TRACKERS = {
    "tensorboard": "tensorboard",
    "mlflow": "mlflow",
    "wandb": "wandb",
    "trackio": "trackio",
}
PREFERENCE_LOSSES = ("dpo", "orpo")
CLASSIFICATION_MAX_LENGTH = 128  # what max_length 0 (auto) means for classification
# Settings whose 0 means 'chosen by the engine' (tables show 'auto' for it)
ZERO_MEANS_AUTO = frozenset({"max_length", "lora_layers", "batch_size"})


def _f(default: Any, help: str, **choices: Any) -> Any:
    """A dataclass field with its help text (shared by CLI flags and form labels)."""
    return field(default=default, metadata={"help": help, **choices})


@dataclass
class ModelConfig:
    """Which model to fine-tune and how to load it."""

    model_name: str = _f("", "Hub id or local folder; empty = the built-in offline default")
    max_length: int = _f(
        0,
        "0 = auto (128 for classification; for causal-lm the data's 99th percentile, at most "
        "2,048): the longest tokenized text, longer ones are cut",
    )
    trust_remote_code: bool = _f(
        False, "Run code shipped with the model (only for models you trust)"
    )
    allow_pickle_weights: bool = _f(
        False,
        "Allow .bin (pickle) weights when a model has no safetensors (unsafe for untrusted models)",
    )
    attention: str = _f("auto", "Attention kernel: auto, eager or sdpa", choices=ATTENTION)
    base_precision: str = _f(
        "auto",
        "causal-lm: how the frozen base weights are stored: auto (full precision when the step "
        "fits in half the free RAM, else int8, else int4), fp32, bf16, int8 or int4 "
        "(weight-only, LoRA on top; for 3B-8B models)",
        choices=BASE_PRECISIONS,
    )


@dataclass
class DataConfig:
    """Which data to train on and how to read it."""

    data_file_path: str = _f(
        "",
        "A data file (JSON / JSONL / CSV / TSV / Parquet / TXT), a save_to_disk folder or a Hub "
        "dataset id; empty = bundled example",
    )
    data_config: str = _f("", "Hub dataset config name (some datasets need one)")
    data_split: str = _f("", "Split to train on, with an optional slice: train, train[:2000]")
    eval_split: str = _f("", "Split to evaluate on (default: validation / dev / test if present)")
    eval_file_path: str = _f("", "Optional separate evaluation file (same format rules)")
    text_column: str = _f("", "Text column; empty = detect from common names")
    label_column: str = _f("", "Label column; empty = detect from common names")
    label_names: str = _f("", "Names for int labels 0..n-1, comma-separated: negative,positive")
    column_map: str = _f(
        "",
        "causal-lm: map format names to your columns, e.g. prompt=question,completion=answer "
        "(names: text, prompt, completion, messages, conversations, instruction, input, output, "
        "system); empty = detect",
    )
    validation_fraction: float = _f(0.1, "Share held out for evaluation when the data has no split")
    max_train_rows: int = _f(0, "Use only the first N training rows (0 = all)")
    max_eval_rows: int = _f(0, "Use only the first N evaluation rows (0 = all)")


@dataclass
class LoraSettings:
    """LoRA adapter settings."""

    lora_r: int = _f(8, "LoRA rank")
    lora_alpha: int = _f(16, "LoRA alpha (scaling = alpha / r)")
    # 0 by default: dropout's random numbers cost ~13% of a bf16 step here, for no accuracy gain.
    lora_dropout: float = _f(0.0, "Dropout on the LoRA input (0 is faster on CPU)")
    # all-linear by default: on 2,000 SST-2 rows it scored 80-82% where query/value scored 77-78%.
    target_modules: str = _f(
        "all-linear",
        "'all-linear' (every linear layer but the head), 'auto' (attention query/value: "
        "faster, for big data) or comma-separated module names",
    )
    modules_to_save: str = _f(
        "auto", "Extra modules trained in full; 'auto' = the classifier head (and pooler)"
    )
    # 0 (auto) by default: the top third below 10,000 training rows (fastest; above the plain
    # recipe's accuracy on 2,000 SST-2 rows), the top half below 50,000 (20,000 rows need more
    # than the top third to match it), every layer from there (the full set needs it for 88%):
    # engine.models.lora.effective_lora_layers, docs/benchmarks.md.
    lora_layers: float = _f(
        0.0,
        "0 = auto (the top third below 10,000 rows, the top half below 50,000, else all; "
        "causal-lm: all); 1 = every layer; "
        "0.5 = the top half. LoRA goes on that share of the layers, counted from the top; "
        "backward stops below",
    )
    use_dora: bool = _f(False, "Weight-decomposed LoRA (DoRA); slower")
    use_rslora: bool = _f(False, "Rank-stabilised scaling (alpha / sqrt(r))")
    init_adapter: str = _f(
        "",
        "Start from a trained LoRA adapter (a run directory or an adapter folder, e.g. an SFT "
        "run's) instead of a fresh one; its rank and target modules are kept",
    )
    train_chat_tokens: bool = _f(
        True,
        "causal-lm: train the embedding rows of chat-template tokens the model never learnt "
        "(the ChatML fallback's, or all-zero rows) so it can learn to end its answers",
    )


@dataclass
class TrainingConfig:
    """Optimisation, precision, evaluation and checkpoint settings."""

    epochs: float = _f(3.0, "Passes over the training data")
    max_steps: int = _f(0, "Stop after N optimiser steps (0 = use epochs)")
    # 0 (auto): engine.config.tasks.auto_batch_size. Classification takes 12 (~15% slower per
    # example than 16 on 2 cores, but 2,000 SST-2 rows reach 80.6% over five seeds where 16
    # reaches 79.0%, and the full set ends higher) except at 10,000-49,999 rows, where 16 is
    # faster at the same accuracy; causal-lm takes 12 rows up to 512 tokens, fewer beyond
    # (README, bench/speed.py, bench/sft_scale.py).
    batch_size: int = _f(
        0,
        "0 = auto (12; 16 for 10,000-49,999 classification rows; causal-lm: up to 6,144 "
        "tokens of max_length a step); examples per step per device",
    )
    grad_accum: int = _f(1, "Gradient accumulation steps")
    # 1e-3: 2e-3 scored a little higher on 2,000 rows but collapsed mid-epoch on 67k (bench/).
    learning_rate: float = _f(1e-3, "Peak learning rate (LoRA likes ~5e-4..2e-3)")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    warmup_ratio: float = _f(0.06, "Share of steps spent warming up the learning rate")
    lr_scheduler: str = _f("linear", "Learning-rate schedule (linear, cosine, constant...)")
    precision: str = _f("auto", "auto, bf16 or fp32 (fp16 is refused on CPU)", choices=PRECISIONS)
    model_dropout: float = _f(0.0, "Dropout inside the base model (0 is much faster on CPU)")
    group_by_length: bool = _f(True, "Batch texts of similar length together (less padding)")
    train_on_prompt: bool = _f(
        False, "causal-lm: also train on prompt tokens (default: the answers only)"
    )
    preference_loss: str = _f(
        "dpo",
        "preference: dpo (sigmoid loss against the base with the adapter off) or orpo "
        "(odds ratio plus the chosen answers' loss, no reference model)",
        choices=PREFERENCE_LOSSES,
    )
    beta: float = _f(
        0.1,
        "preference: DPO's beta (how far the model may move from the reference; 0.1 typical) "
        "or ORPO's lambda (the odds-ratio term's weight; 0.1 typical)",
    )
    gradient_checkpointing: str = _f(
        "auto",
        "auto = on when a step's memory estimate is over half the free RAM; recomputes "
        "activations in backward (a fraction of the memory, ~10% slower); true / false force it",
        choices=CHECKPOINTING,
    )
    memory_mode: str = _f(
        "auto",
        "How the heap treats a step's freed memory: fast keeps it for reuse; lean returns it at "
        "once (a decoder's peak RSS ~0.8x, its steps ~1.3x slower); auto = lean when a "
        "decoder step, checkpointed as the run will be, may need over half the free RAM",
        choices=MEMORY_MODES,
    )
    threads: int = _f(
        0, "Torch threads (0 = auto: the fastest count, timed in the first steps and cached)"
    )
    eval_strategy: str = _f("epoch", "When to evaluate: epoch, steps or no", choices=STRATEGIES)
    eval_steps: int = _f(0, "Evaluate every N steps (with eval_strategy=steps)")
    save_strategy: str = _f("epoch", "When to checkpoint: epoch, steps or no", choices=STRATEGIES)
    save_steps: int = _f(0, "Checkpoint every N steps (with save_strategy=steps)")
    checkpoint_minutes: float = _f(10.0, "Also checkpoint every N minutes of wall clock (0 = off)")
    save_total_limit: int = _f(2, "Keep the last K checkpoints")
    metric_for_best: str = _f(
        "auto",
        "Metric that picks the best checkpoint; auto = accuracy for classification, "
        "eval loss for causal-lm",
    )
    early_stopping_patience: int = _f(0, "Stop after N evaluations without improvement (0 = off)")
    logging_steps: int = _f(10, "Report loss and throughput every N steps")
    report_to: str = _f(
        "none",
        "Experiment trackers that also get the run's metrics: none, or a comma list of "
        "tensorboard, mlflow, wandb, trackio (each an extra: pip install 'finetune-tui[NAME]')",
    )
    logging_dir: str = _f("", "TensorBoard log folder; empty = tb/ inside the run directory")
    tracking_uri: str = _f(
        "",
        "MLflow tracking URI; empty = $MLFLOW_TRACKING_URI, else a file store in the run "
        "directory (mlruns/)",
    )
    tracker_project: str = _f(
        "", "Project / experiment name in MLflow, W&B and trackio; empty = finetune-tui"
    )
    seed: int = _f(42, "Random seed (data split, init, order)")


@dataclass
class DistributedConfig:
    """Several processes (torchrun, gloo) on this machine and, optionally, several machines."""

    # A string so a config can say "auto" (TOML ints are accepted and kept as their text).
    nproc: str = _f("1", "Processes here (torchrun); auto = 1 per 8 physical cores")
    nnodes: int = _f(1, "Machines taking part (the others join with 'finetune-tui join')")
    node_rank: int = _f(0, "This machine's number: 0 runs the run, 1..nnodes-1 join it")
    master_addr: str = _f("127.0.0.1", "Address of machine 0 that the other machines reach")
    master_port: int = _f(
        29500, "TCP port on machine 0 for the rendezvous (open it between machines)"
    )
    gloo_socket_ifname: str = _f("", "Network interface for gloo (e.g. eth0); empty = automatic")
    max_restarts: int = _f(0, "Restart all processes from the last checkpoint up to N times")


@dataclass
class OutputConfig:
    """Where the result goes."""

    output_dir: str = _f("", "Folder for the final adapter; empty = inside the run directory")
    overwrite: bool = _f(
        False, "Write into an output_dir that holds other files or another run's adapter"
    )
    run_name: str = _f("", "A name for the run; empty = derived from model and data")
    sweep_id: str = _f("", "The sweep this run belongs to (set when a sweep is queued)")
    notify: str = _f(
        "off",
        "When the run ends, ring the terminal: off, bell or osc9 (a desktop notification)",
        choices=NOTIFY,
    )


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "lora": LoraSettings,
    "training": TrainingConfig,
    "distributed": DistributedConfig,
    "output": OutputConfig,
}
