"""Look at a model or a data file before training: what the setup form shows (no Textual here)."""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.core.errors import UserError

PREVIEW_ROWS = 8
# One inspection at a time: two threads importing transformers at once can fail half-way
# ("cannot import name 'AutoConfig'"), and a newer request waits for the older one anyway.
_MODEL_LOCK = threading.Lock()


@dataclass
class ModelInfo:
    """What the form needs to know about a model: kind, size and the layers LoRA can adapt."""

    name: str
    architecture: str = ""
    model_type: str = ""
    parameters: int = 0
    layers: int = 0
    hidden_size: int = 0
    max_positions: int = 0
    linear_modules: list[str] = field(default_factory=list)
    auto_targets: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line such as 'BertModel (bert), 22.7M parameters, 6 layers x 384'."""
        size = f"{self.parameters / 1e6:.1f}M" if self.parameters >= 1e5 else f"{self.parameters:,}"
        parts = [
            f"{self.architecture or self.model_type} ({self.model_type})",
            f"{size} parameters",
        ]
        if self.layers:
            parts.append(f"{self.layers} layers x {self.hidden_size}")
        return ", ".join(parts)


@dataclass
class DataInfo:
    """A data file as the form shows it: format, columns, first rows, label counts, split sizes."""

    path: str
    format: str
    columns: list[str]
    preview: list[dict[str, Any]]
    total_rows: int
    text_column: str = ""
    label_column: str = ""
    label_counts: dict[str, int] = field(default_factory=dict)
    train_size: int = 0
    eval_size: int = 0
    eval_source: str = ""
    # One training example as (text, trained) pieces, for tasks that mask part of it (causal-lm).
    example: list[tuple[str, bool]] = field(default_factory=list)
    error: UserError | None = None


def _config_value(config: Any, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


def inspect_model(
    name: str,
    *,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    task: str = "classification",
) -> ModelInfo:
    """Read a model's config and build it for the task on the meta device (no weights loaded)."""
    with _MODEL_LOCK:
        return _inspect_model(name, trust_remote_code, allow_pickle, task)


def _inspect_model(name: str, trust_remote_code: bool, allow_pickle: bool, task: str) -> ModelInfo:
    from engine.models.loading import check_model_source, load_model_config, resolve_model_name
    from engine.models.lora import choose_targets, linear_module_names

    resolved = resolve_model_name(name)
    check_model_source(resolved, allow_pickle)
    import torch
    from transformers.utils import logging as hf_logging

    from engine.tasks import get_task

    hf_logging.set_verbosity_error()
    config = load_model_config(resolved, trust_remote_code)
    the_task = get_task(task)
    try:
        with torch.device("meta"):
            model = the_task.meta_model(config, trust_remote_code)
    except ValueError as exc:
        raise UserError(
            f"this model does not fit the task '{task}': {exc}",
            where=resolved,
            hint="pick another model or task",
            field="model.model_name",
        ) from None
    archs = getattr(config, "architectures", None) or [type(model).__name__]
    return ModelInfo(
        name=resolved,
        architecture=str(archs[0]),
        model_type=str(getattr(config, "model_type", "")),
        parameters=sum(p.numel() for p in model.parameters()),
        layers=_config_value(config, "num_hidden_layers", "n_layer", "num_layers"),
        hidden_size=_config_value(config, "hidden_size", "n_embd", "d_model", "dim"),
        max_positions=_config_value(config, "max_position_embeddings", "n_positions"),
        linear_modules=linear_module_names(model),
        auto_targets=choose_targets(model, "auto"),
    )


def inspect_data(cfg: Any, preview_rows: int = PREVIEW_ROWS) -> DataInfo:
    """Read the configured data for the form; a problem the task finds is kept in `.error`.

    Data that cannot be read at all raises its UserError.
    """
    from engine.data.sources import open_source
    from engine.tasks import get_task

    data_cfg = cfg.data
    source = open_source(
        data_cfg.data_file_path, config=data_cfg.data_config, split=data_cfg.data_split
    )
    first = source.splits[source.train_split]
    rows = first.select(range(min(preview_rows, len(first)))).to_list()
    info = DataInfo(
        path=str(source.path) if source.path else source.name,
        format=source.format,
        columns=source.columns,
        preview=[{k: v for k, v in row.items() if k != "__line__"} for row in rows],
        total_rows=sum(len(ds) for ds in source.splits.values()),
    )
    task = get_task(cfg.task)
    try:
        data = task.prepare_data(cfg, None)
    except UserError as exc:
        exc.field = exc.field or "data.data_file_path"
        info.error = exc
        return info
    info.train_size, info.eval_size = data.train_size, data.eval_size
    info.eval_source = data.eval_source
    for key, value in task.data_summary(data).items():
        setattr(info, key, value)
    return info


def main(argv: list[str] | None = None) -> int:
    """`python -m engine.tasks.inspect MODEL`: print the model summary as JSON (exit 2 on a user error)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        info = inspect_model(args[0] if args else "")
    except UserError as exc:
        print(json.dumps({"error": exc.one_line(), "field": exc.field}))
        return 2
    print(json.dumps(asdict(info)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
