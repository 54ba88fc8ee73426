"""Messages the workers post to the screens (dataclass style: the data, nothing else)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from textual.message import Message

from engine.core.errors import UserError
from engine.rundir.events import Event
from engine.tasks.inspect import DataInfo, ModelInfo


@dataclass
class RunEvents(Message):
    """A batch of new events from a run (the first batch is the whole history), and its state."""

    run_dir: Path
    events: list[Event] = field(default_factory=list)
    state: str = ""
    history: bool = False


@dataclass
class ModelsFound(Message):
    """Models that work offline here (the default folder, the local Hugging Face cache)."""

    names: list[str] = field(default_factory=list)


@dataclass
class ModelChecked(Message):
    """The result of inspecting a model: its info, or the error to show next to the field."""

    name: str
    info: ModelInfo | None = None
    error: UserError | None = None


@dataclass
class DataChecked(Message):
    """The result of reading a data file for the form (info may carry a column / label error)."""

    key: tuple[object, ...]
    info: DataInfo | None = None
    error: UserError | None = None


@dataclass
class RunLaunched(Message):
    """The engine was started for a run directory (or could not be: `error`)."""

    run_dir: Path | None = None
    error: UserError | None = None
    queued: str = ""  # runs were queued instead: what to tell the user


@dataclass
class PreflightDone(Message):
    """The estimate of a few timed training steps (speed, run time, memory), or why it failed."""

    lines: list[str] = field(default_factory=list)
    error: str = ""
