"""A run's settings: RunConfig and its sections, TOML round-trip, flat field access, validation.

Imports only engine.core. `from engine.config import X` is the way in; the modules are:
sections (the setting dataclasses and their choices), tasks (the task names and metrics the
settings know), fields (a field by name, text to type), validation (what is wrong and how to
fix it) and run_config (RunConfig itself).
"""

from engine.config.fields import all_fields, coerce, field_path
from engine.config.run_config import RunConfig
from engine.config.sections import (
    ATTENTION,
    CHECKPOINTING,
    CLASSIFICATION_MAX_LENGTH,
    MEMORY_MODES,
    NOTIFY,
    PRECISIONS,
    SCHEDULERS,
    SECTIONS,
    STRATEGIES,
    ZERO_MEANS_AUTO,
    DataConfig,
    DistributedConfig,
    LoraSettings,
    ModelConfig,
    OutputConfig,
    TrainingConfig,
)
from engine.config.tasks import TASK_NAMES, TASKS, TaskSpec, task_metrics
from engine.config.validation import config_problems, distributed_problems

__all__ = [
    "ATTENTION",
    "CHECKPOINTING",
    "CLASSIFICATION_MAX_LENGTH",
    "MEMORY_MODES",
    "NOTIFY",
    "PRECISIONS",
    "SCHEDULERS",
    "SECTIONS",
    "STRATEGIES",
    "TASKS",
    "TASK_NAMES",
    "DataConfig",
    "DistributedConfig",
    "LoraSettings",
    "ModelConfig",
    "OutputConfig",
    "RunConfig",
    "TaskSpec",
    "TrainingConfig",
    "ZERO_MEANS_AUTO",
    "all_fields",
    "coerce",
    "config_problems",
    "distributed_problems",
    "field_path",
    "task_metrics",
]
