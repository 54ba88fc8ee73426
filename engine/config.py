"""RunConfig: every setting of one run, with TOML round-trip and per-field validation."""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from engine.errors import ConfigError, UserError
from engine.tasks import REGISTRY, TASK_NAMES

PRECISIONS = ("auto", "bf16", "fp32", "fp16")
STRATEGIES = ("epoch", "steps", "no")
ATTENTION = ("auto", "eager", "sdpa")
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
CLASSIFICATION_MAX_LENGTH = 128  # what max_length 0 (auto) means for classification


def task_metrics(task: str) -> tuple[str, ...]:
    """Metric names a task's evaluations report (valid for metric_for_best)."""
    if task not in REGISTRY:
        return ("loss",)
    from engine.tasks import get_task

    return get_task(task).metrics


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
    # 0 (auto) by default: the top third below 50,000 training rows (1.4-1.6x faster, 1.5-2
    # points below every layer on 2,000 / 20,000 SST-2 rows), every layer from there (the full
    # set needs it for 88%): engine.model.effective_lora_layers, README (issue 13).
    lora_layers: float = _f(
        0.0,
        "0 = auto (the top third below 50,000 rows, else all; causal-lm: all); 1 = every layer; "
        "0.5 = the top half. LoRA goes on that share of the layers, counted from the top; "
        "backward stops below",
    )
    use_dora: bool = _f(False, "Weight-decomposed LoRA (DoRA); slower")
    use_rslora: bool = _f(False, "Rank-stabilised scaling (alpha / sqrt(r))")
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
    # 12: ~15% slower per example than 16 on 2 cores, but 2,000 SST-2 rows reach 80.6% on
    # average over five seeds (16: 79.0%) and the full set ends higher (README, bench/speed.py).
    batch_size: int = _f(12, "Examples per step per device")
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
    gradient_checkpointing: str = _f(
        "auto",
        "auto = on when a step's memory estimate is over half the free RAM; recomputes "
        "activations in backward (a fraction of the memory, ~10% slower); true / false force it",
        choices=CHECKPOINTING,
    )
    threads: int = _f(0, "Torch threads (0 = the cores available to this process)")
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
    seed: int = _f(42, "Random seed (data split, init, order)")


@dataclass
class DistributedConfig:
    """Several processes (torchrun, gloo) on this machine and, optionally, several machines."""

    # A string so a config can say "auto" (TOML ints are accepted and kept as their text).
    nproc: str = _f("1", "Processes on this machine (torchrun); auto = 1 per 8 cores")
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


@dataclass
class RunConfig:
    """All settings of one run; round-trips to TOML (`config.toml` in the run directory)."""

    task: str = "classification"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def anchor_paths(self, base: Path | None = None) -> None:
        """Make relative local paths absolute from `base` (default: the working folder), so an
        engine started elsewhere (detached, resumed, from the queue) still finds them. Names
        that are not on disk here (hub ids) stay as they are."""
        here = base or Path.cwd()

        def anchored(value: str, must_exist: bool = True) -> str:
            if not value or value.startswith("~") or Path(value).is_absolute():
                return value
            full = here / value
            return str(full.resolve()) if full.exists() or not must_exist else value

        self.model.model_name = anchored(self.model.model_name)
        self.data.data_file_path = anchored(self.data.data_file_path)
        self.data.eval_file_path = anchored(self.data.eval_file_path)
        self.output.output_dir = anchored(self.output.output_dir, must_exist=False)

    @property
    def best_metric(self) -> str:
        """The metric that picks the best checkpoint (metric_for_best, 'auto' resolved)."""
        setting = self.training.metric_for_best
        if setting != "auto":
            return setting
        if self.task not in REGISTRY:
            return "loss"
        from engine.tasks import get_task

        return get_task(self.task).default_metric

    # -- conversion -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain nested dict (TOML-ready: no None values)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, source: str = "config") -> RunConfig:
        """Build from a nested dict; unknown keys and wrong types are ConfigErrors."""
        problems: dict[str, str] = {}
        cfg = cls()
        for key, value in raw.items():
            if key == "task":
                cfg.task = str(value)
            elif key in SECTIONS:
                if not isinstance(value, dict):
                    problems[key] = f"[{key}] must be a table of settings"
                    continue
                section = getattr(cfg, key)
                names = {f.name: f for f in fields(section)}
                for name, item in value.items():
                    if name not in names:
                        problems[f"{key}.{name}"] = (
                            f"unknown setting '{name}' in [{key}]; known: {', '.join(names)}"
                        )
                        continue
                    try:
                        setattr(section, name, coerce(names[name], item))
                    except ValueError as exc:
                        problems[f"{key}.{name}"] = str(exc)
            else:
                problems[key] = (
                    f"unknown section '{key}' in {source}; known: task, {', '.join(SECTIONS)}"
                )
        if problems:
            raise ConfigError(problems)
        return cfg

    def to_toml(self) -> str:
        """The config as TOML text."""
        import tomli_w

        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_toml(cls, text: str, *, source: str = "config") -> RunConfig:
        """Parse TOML text; a syntax error names the line."""
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UserError(
                f"not valid TOML: {exc}", where=source, hint="fix the line it names"
            ) from None
        return cls.from_dict(raw, source=source)

    def save(self, path: str | Path) -> None:
        """Write the config to a TOML file atomically (a full disk leaves the old file or none)."""
        from engine.atomic import atomic_write_text

        atomic_write_text(path, self.to_toml())

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """Read a TOML config file; a missing, unreadable or empty file is a UserError."""
        p = Path(path)
        if not p.is_file():
            raise UserError(
                "config file not found", where=str(p), hint="check the path passed to --config"
            )
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(
                "the config file is not UTF-8 text", where=str(p), hint="give a TOML file"
            ) from None
        except OSError as exc:
            raise UserError(
                f"cannot read the config file ({exc.strerror or exc})",
                where=str(p),
                hint="check its permissions",
            ) from None
        if not text.strip():
            # Never the defaults: a run would then train the example data over its own results.
            raise UserError(
                "the config file is empty (a full disk can leave it so)",
                where=str(p),
                hint="restore it, or start a new run",
            )
        return cls.from_toml(text, source=str(p))

    def copy(self) -> RunConfig:
        """A deep copy."""
        return RunConfig.from_dict(self.to_dict())

    # -- flat access (CLI flags and form fields) ------------------------------------------------
    def get(self, name: str) -> Any:
        """The value of a flat field name such as 'lora_r' or 'model.max_length'."""
        section, fname = field_path(name)
        return getattr(getattr(self, section), fname)

    def set(self, name: str, value: Any) -> None:
        """Set a flat field from text or a typed value (type-checked)."""
        section, fname = field_path(name)
        fdef = {f.name: f for f in fields(SECTIONS[section])}[fname]
        try:
            setattr(getattr(self, section), fname, coerce(fdef, value))
        except ValueError as exc:
            raise ConfigError({f"{section}.{fname}": str(exc)}) from None

    # -- validation -------------------------------------------------------------------------------
    def problems(self) -> dict[str, str]:
        """Every bad field with a message that says how to fix it (empty when valid)."""
        p: dict[str, str] = {}
        m, d, lo, t = self.model, self.data, self.lora, self.training
        if self.task not in TASK_NAMES:
            p["task"] = f"task must be one of {', '.join(TASK_NAMES)} (got '{self.task}')"
        if m.max_length != 0 and not 8 <= m.max_length <= 8192:
            p["model.max_length"] = "max_length must be 0 (auto) or between 8 and 8192"
        if t.gradient_checkpointing not in CHECKPOINTING:
            p["training.gradient_checkpointing"] = (
                "gradient_checkpointing must be auto, true or false "
                f"(got '{t.gradient_checkpointing}')"
            )
        if m.attention not in ATTENTION:
            p["model.attention"] = f"attention must be one of {', '.join(ATTENTION)}"
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
        if not 1 <= t.batch_size <= 4096:
            p["training.batch_size"] = "batch_size must be between 1 and 4096"
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
        metrics = task_metrics(self.task)
        if t.metric_for_best not in ("auto", *metrics):
            p["training.metric_for_best"] = (
                f"metric_for_best must be auto or one of {', '.join(metrics)} for {self.task} "
                f"(got '{t.metric_for_best}')"
            )
        if t.precision not in PRECISIONS:
            p["training.precision"] = (
                f"precision must be one of auto, bf16, fp32 (got '{t.precision}')"
            )
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
            p["training.early_stopping_patience"] = (
                "early_stopping_patience must be 0 (off) or more"
            )
        if t.early_stopping_patience and t.eval_strategy == "no":
            p["training.early_stopping_patience"] = (
                "early stopping needs evaluation (eval_strategy)"
            )
        if self.output.notify not in NOTIFY:
            p["output.notify"] = f"notify must be one of {', '.join(NOTIFY)}"
        if t.logging_steps < 1:
            p["training.logging_steps"] = "logging_steps must be at least 1"
        p.update(distributed_problems(self.distributed))
        nproc, total = self.distributed.nproc.strip(), t.batch_size * t.grad_accum
        if nproc.isdigit() and "distributed.nproc" not in p and total > 0:
            world = int(nproc) * max(1, self.distributed.nnodes)
            if total % world:
                # Every world size keeps the global batch (batch x grad_accum) of one step.
                p["distributed.nproc"] = (
                    f"{world} processes cannot share the global batch of {total} "
                    f"(batch_size x grad_accum) evenly: use a count that divides {total}"
                )
        return p

    def validate(self) -> RunConfig:
        """Raise ConfigError listing the bad fields; return self when valid."""
        problems = self.problems()
        if problems:
            raise ConfigError(problems)
        return self


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


def field_path(name: str) -> tuple[str, str]:
    """Resolve 'lora_r', 'lora-r' or 'lora.lora_r' to (section, field name)."""
    name = name.replace("-", "_")
    if "." in name:
        section, fname = name.split(".", 1)
        if section in SECTIONS and fname in {f.name for f in fields(SECTIONS[section])}:
            return section, fname
    for section, cls in SECTIONS.items():
        if name in {f.name for f in fields(cls)}:
            return section, name
    raise ConfigError({name: f"unknown setting '{name}'"})


def all_fields() -> list[tuple[str, dataclasses.Field]]:
    """Every (section, field) pair, in display order."""
    return [(section, f) for section, cls in SECTIONS.items() for f in fields(cls)]


def coerce(fdef: dataclasses.Field, value: Any) -> Any:
    """Convert text or a TOML value to the field's type; ValueError says what was expected."""
    kind = fdef.type if isinstance(fdef.type, str) else fdef.type.__name__
    name = fdef.name
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name} must be true or false (got '{value}')")
    if kind == "int":
        if isinstance(value, bool):
            raise ValueError(f"{name} must be a whole number (got {value})")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise ValueError(f"{name} must be a whole number (got '{value}')") from None
    if kind == "float":
        if isinstance(value, bool):
            raise ValueError(f"{name} must be a number (got {value})")
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ValueError(
                f"{name} must be a number such as 0.1 or 1e-3 (got '{value}')"
            ) from None
        if not math.isfinite(number):
            raise ValueError(f"{name} must be a finite number (got '{value}')")
        return number
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    choices = fdef.metadata.get("choices", ())
    if "true" in choices:  # a switch with an auto setting: old configs hold a TOML bool
        text = str(value).strip().lower()
        words = {"1": "true", "yes": "true", "on": "true", "0": "false", "no": "false"}
        return words.get(text, "false" if text == "off" else text)
    return str(value)
