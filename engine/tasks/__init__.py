"""The tasks this engine trains; `get_task` is the only way the shared code reaches one."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from engine.errors import UserError

if TYPE_CHECKING:
    from engine.tasks.base import Task

# name -> "module:Class"; imported on first use so a task's heavy imports stay lazy.
REGISTRY: dict[str, str] = {
    "classification": "engine.tasks.classification:ClassificationTask",
    "causal-lm": "engine.tasks.causal_lm:CausalLMTask",
}
TASK_NAMES: tuple[str, ...] = tuple(REGISTRY)


def get_task(name: str) -> Task:
    """The task object for a task name (a UserError names the known ones)."""
    target = REGISTRY.get(name)
    if target is None:
        raise UserError(
            f"unknown task '{name}'",
            where="task",
            hint=f"use one of: {', '.join(TASK_NAMES)}",
            field="task",
        )
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)()
