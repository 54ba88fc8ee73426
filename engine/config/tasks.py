"""The tasks a config may name, and what settings need of each without loading it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    """A task as the settings see it: where its class lives, its metrics, best metric, auto batch."""

    target: str  # "module:Class", imported on first use so a task's heavy imports stay lazy
    metrics: tuple[str, ...]
    default_metric: str
    # batch_size 0 (auto): (from this many training rows, this batch), lowest first
    batch_bands: tuple[tuple[int, int], ...] = ((0, 12),)
    # and at most this many tokens of max_length a step (0 = no cap): long rows, fewer of them
    step_tokens: int = 0


TASKS: dict[str, TaskSpec] = {
    "classification": TaskSpec(
        "engine.tasks.classification:ClassificationTask",
        ("accuracy", "f1", "loss"),
        "accuracy",
        # MiniLM-L6 / SST-2, 1 epoch (bench/speed.py, docs/benchmarks.md): 12 scores best on 2,000
        # rows (80.6% against 16's 79.0%) and the full set ends higher with it; with the top half
        # of the layers (10,000-49,999 rows) 16 is ~10% faster at the same accuracy (86.2%).
        batch_bands=((0, 12), (10_000, 16), (50_000, 12)),
    ),
    # causal-lm's accuracy is next-token accuracy on answer tokens
    "causal-lm": TaskSpec(
        "engine.tasks.causal_lm:CausalLMTask",
        ("loss", "perplexity", "accuracy"),
        "loss",
        # 12 rows of 512 tokens: the shape the speed and memory figures are measured at (README)
        step_tokens=12 * 512,
    ),
    # preference (DPO / ORPO) pairs: accuracy is the share of held-out pairs whose chosen
    # answer gets the higher reward; margin is the mean reward difference
    "preference": TaskSpec(
        "engine.tasks.preference:PreferenceTask",
        ("accuracy", "margin", "loss", "chosen_logp", "rejected_logp"),
        "accuracy",
        batch_bands=((0, 8),),  # pairs a step (TRL's DPO/ORPO default)
        # a pair is two rows (chosen and rejected): half causal-lm's rows for the same tokens
        step_tokens=6 * 512,
    ),
}
# Tasks whose result is a language model (chat try-it, merged export, GGUF)
GENERATIVE_TASKS = frozenset({"causal-lm", "preference"})
TASK_NAMES: tuple[str, ...] = tuple(TASKS)


def task_metrics(task: str) -> tuple[str, ...]:
    """Metric names a task's evaluations report (valid for metric_for_best)."""
    spec = TASKS.get(task)
    return spec.metrics if spec else ("loss",)


AUTO_BATCH_SIZE = 12  # what auto means before the training rows are counted


def auto_batch_size(
    task: str,
    train_rows: int | None = None,
    grad_accum: int = 1,
    world: int = 1,
    max_length: int = 0,
) -> int:
    """The batch for batch_size 0 (auto): the task's choice for its rows and length, shared evenly.

    Without a row count it is AUTO_BATCH_SIZE; a task with a token budget per step takes fewer
    rows as max_length grows (causal-lm: 12 up to 512 tokens, 6 at 1,024, 3 at 2,048). The
    batch is then raised to the first that `world` processes share evenly (batch x grad_accum).
    """
    spec = TASKS.get(task)
    wanted = AUTO_BATCH_SIZE
    if spec is not None and train_rows is not None:
        wanted = [batch for rows, batch in spec.batch_bands if train_rows >= rows][-1]
    if spec is not None and spec.step_tokens and max_length > 0:
        wanted = max(1, min(wanted, spec.step_tokens // max_length))
    world = max(1, world)
    while (wanted * grad_accum) % world:
        wanted += 1
    return wanted
