"""What every task provides to the shared run life: data, model, encoding, metrics, extras."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar


@dataclass
class TaskData:
    """A task's prepared rows: train and eval sets plus what the task learned about them."""

    train: Any
    eval: Any | None
    eval_source: str  # "file split", "eval file", "held out", "none"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def train_size(self) -> int:
        """Training examples."""
        return len(self.train)

    @property
    def eval_size(self) -> int:
        """Evaluation examples (0 without evaluation)."""
        return len(self.eval) if self.eval is not None else 0


@dataclass
class Encoded:
    """Tokenized splits ready for the collator, and whether they came from the run's cache."""

    train: Any
    eval: Any | None
    cache_hit: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class MetricHooks:
    """What the Trainer needs to score an evaluation, plus details kept for the `eval` event."""

    compute_metrics: Callable[[Any], dict[str, float]] | None = None
    preprocess_logits: Callable[[Any, Any], Any] | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class Task:
    """One kind of fine-tuning; everything that differs between tasks lives behind this."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    metrics: ClassVar[tuple[str, ...]] = ("loss",)
    default_metric: ClassVar[str] = "loss"
    peft_task_type: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Metrics and the best metric come from the task's entry in engine.config.tasks."""
        super().__init_subclass__(**kwargs)
        from engine.config.tasks import TASKS

        spec = TASKS.get(cls.name)
        if spec is not None:
            cls.metrics, cls.default_metric = spec.metrics, spec.default_metric

    def prepare_data(self, cfg: Any, run_dir: Path | None) -> TaskData:
        """Read, check and split the configured data (UserError on a mistake)."""
        raise NotImplementedError

    def subset(self, data: TaskData, indices: list[int]) -> TaskData:
        """The given training rows only, without evaluation (for timing a few steps)."""
        raise NotImplementedError

    def load_model(self, cfg: Any, data: TaskData, precision: str) -> Any:
        """Tokenizer, base model and LoRA adapter (an engine.models.loading.LoadedModel)."""
        raise NotImplementedError

    def encode(self, cfg: Any, data: TaskData, tokenizer: Any, run_dir: Path | None) -> Encoded:
        """Tokenize the splits (cached in the run directory where it helps)."""
        raise NotImplementedError

    def collator(self, cfg: Any, tokenizer: Any) -> Callable[[list[dict[str, Any]]], Any]:
        """The batch collator (dynamic padding)."""
        raise NotImplementedError

    def metric_hooks(self, cfg: Any, data: TaskData, tokenizer: Any) -> MetricHooks:
        """How evaluations are scored."""
        return MetricHooks()

    def callbacks(self, cfg: Any, data: TaskData, loaded: Any, writer: Any) -> list[Any]:
        """Extra Trainer callbacks (e.g. sample generations)."""
        return []

    def started_fields(self, data: TaskData) -> dict[str, Any]:
        """Extra fields of the `started` event."""
        return {}

    def data_summary(self, data: TaskData) -> dict[str, Any]:
        """Fields of engine.tasks.inspect.DataInfo the task fills in (columns found, label counts)."""
        return {}

    def describe_data(self, data: TaskData) -> str:
        """One line about the data for the run log."""
        return f"{data.train_size} train / {data.eval_size} eval examples ({data.eval_source})"

    def save_extras(
        self, out: Path, loaded: Any, cfg: Any, data: TaskData, metrics: dict[str, Any]
    ) -> None:
        """Files the task writes beside the adapter (label map, model card, chat template)."""

    def export_extras(self, out: Path, source: Path, merged: Any | None) -> None:
        """Files an exported copy needs (`merged` is the merged model, None for an adapter copy)."""

    def load_for_inference(self, folder: Path, threads: int = 0) -> tuple[Any, Any]:
        """(model, tokenizer) from an adapter folder, a checkpoint or a merged model."""
        raise NotImplementedError

    def meta_model(self, config: Any, trust_remote_code: bool = False) -> Any:
        """The task's model class built from a config (on whatever device is current)."""
        raise NotImplementedError
