"""The tasks a config may name, and what settings need of each without loading it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    """A task as the settings see it: where its class lives, its metrics and its best metric."""

    target: str  # "module:Class", imported on first use so a task's heavy imports stay lazy
    metrics: tuple[str, ...]
    default_metric: str


TASKS: dict[str, TaskSpec] = {
    "classification": TaskSpec(
        "engine.tasks.classification:ClassificationTask", ("accuracy", "f1", "loss"), "accuracy"
    ),
    # causal-lm's accuracy is next-token accuracy on answer tokens
    "causal-lm": TaskSpec(
        "engine.tasks.causal_lm:CausalLMTask", ("loss", "perplexity", "accuracy"), "loss"
    ),
}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)


def task_metrics(task: str) -> tuple[str, ...]:
    """Metric names a task's evaluations report (valid for metric_for_best)."""
    spec = TASKS.get(task)
    return spec.metrics if spec else ("loss",)
