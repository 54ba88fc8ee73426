"""The tasks this engine trains (one package each, behind engine.tasks.base.Task), and the
entry points that pick a task by name or by the weights: get_task, export, inspect.

May import engine.core, config, rundir, data and models; never training, scaleout, runs or cli.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from engine.config.tasks import TASK_NAMES, TASKS
from engine.core.errors import UserError

if TYPE_CHECKING:
    from engine.tasks.base import Task


def get_task(name: str) -> Task:
    """The task object for a task name (a UserError names the known ones)."""
    spec = TASKS.get(name)
    if spec is None:
        raise UserError(
            f"unknown task '{name}'",
            where="task",
            hint=f"use one of: {', '.join(TASK_NAMES)}",
            field="task",
        )
    module, cls = spec.target.split(":")
    return getattr(importlib.import_module(module), cls)()
