"""Typed events: the only contract between the engine and any UI (one JSON object per line)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

EVENTS_FILE = "events.jsonl"


@dataclass
class Event:
    """Base of every event: a `type` tag and a unix timestamp."""

    type: ClassVar[str] = "event"
    time: float = field(default_factory=time.time)

    def to_json(self) -> str:
        """One JSON line (no newline)."""
        return json.dumps({"type": self.type, **asdict(self)}, separators=(",", ":"))


@dataclass
class Started(Event):
    """The engine began (or resumed) a run: sizes, precision, threads and total steps."""

    type: ClassVar[str] = "started"
    run_id: str = ""
    model: str = ""
    task: str = "classification"
    config: dict[str, Any] = field(default_factory=dict)
    train_size: int = 0
    eval_size: int = 0
    labels: list[str] = field(default_factory=list)
    precision: str = ""
    threads: int = 0
    total_steps: int = 0
    trainable_params: int = 0
    total_params: int = 0
    resumed_from_step: int = 0
    pid: int = 0
    # Scale-out (torchrun): processes in all, machines, processes per machine, and the split of
    # the global batch (per-process batch x grad_accum x world_size = the config's).
    world_size: int = 1
    nnodes: int = 1
    nproc_per_node: int = 1
    batch_size: int = 0
    grad_accum: int = 0


@dataclass
class Phase(Event):
    """What the engine is doing now: loading model, tokenizing, training, evaluating, saving."""

    type: ClassVar[str] = "phase"
    name: str = ""
    detail: str = ""


@dataclass
class Step(Event):
    """Training figures at one logging step."""

    type: ClassVar[str] = "step"
    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    samples_per_s: float | None = None
    tokens_per_s: float | None = None
    elapsed_s: float = 0.0
    eta_s: float | None = None
    world_size: int = 1
    nnodes: int = 1
    # a task's own training figures since the last log (preference: margin, accuracy, log-probs)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Eval(Event):
    """Evaluation results at one step: accuracy, macro-F1, eval loss, per-class and confusion."""

    type: ClassVar[str] = "eval"
    step: int = 0
    epoch: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sample(Event):
    """A generation from a held-out prompt at an evaluation, beside its reference answer."""

    type: ClassVar[str] = "sample"
    step: int = 0
    index: int = 0
    prompt: str = ""
    reference: str = ""
    generated: str = ""


@dataclass
class Checkpoint(Event):
    """A checkpoint was written."""

    type: ClassVar[str] = "checkpoint"
    step: int = 0
    path: str = ""
    reason: str = ""


@dataclass
class Log(Event):
    """A message worth showing in the log pane (info, warning, error)."""

    type: ClassVar[str] = "log"
    level: str = "info"
    message: str = ""


@dataclass
class Finished(Event):
    """The run completed; the adapter is in `output_dir`."""

    type: ClassVar[str] = "finished"
    step: int = 0
    output_dir: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0


@dataclass
class Stopped(Event):
    """The run was stopped on request after saving a checkpoint and the adapter."""

    type: ClassVar[str] = "stopped"
    step: int = 0
    output_dir: str = ""
    checkpoint: str = ""
    reason: str = ""


@dataclass
class Failed(Event):
    """The run failed: the message and a hint a person can act on."""

    type: ClassVar[str] = "failed"
    message: str = ""
    hint: str = ""
    where: str = ""
    user_error: bool = False


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (Started, Phase, Step, Eval, Sample, Checkpoint, Log, Finished, Stopped, Failed)
}
FINAL_TYPES = frozenset({"finished", "stopped", "failed"})


def _fits(kind: str, value: Any) -> bool:
    """True when a JSON value suits a field annotated `kind` (annotations are strings here)."""
    if value is None:
        return "None" in kind
    base = kind.split("|")[0].split("[")[0].strip()
    if base == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if base == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if base == "bool":
        return isinstance(value, bool)
    if base == "str":
        return isinstance(value, str)
    if base == "dict":
        return isinstance(value, dict)
    if base == "list":
        return isinstance(value, list)
    return True


def parse_event(raw: dict[str, Any]) -> Event | None:
    """A typed event from a decoded JSON object; never raises.

    Unknown fields are ignored, unknown types give None, and a field of the wrong type (a
    hand-edited or corrupted line, e.g. `"metrics": "notadict"`) takes its default.
    """
    cls = EVENT_TYPES.get(str(raw.get("type", "")))
    if cls is None:
        return None
    kinds = {f.name: str(f.type) for f in fields(cls)}
    values = {k: v for k, v in raw.items() if k in kinds and _fits(kinds[k], v)}
    if "labels" in values:
        values["labels"] = [str(v) for v in values["labels"]]
    try:
        return cls(**values)
    except (TypeError, ValueError):  # pragma: no cover - defensive
        return None


def parse_line(line: str) -> Event | None:
    """Parse one line; a malformed line gives None instead of an exception.

    A line that starts with the torn remains of an event (an engine killed mid-write, before a
    resumed engine appended to the file) still yields the whole event at its end.
    """
    line = line.strip()
    if not line:
        return None
    try:
        raw = json.loads(line)
    except ValueError:
        start = line.rfind('{"type":')
        if start <= 0:
            return None
        return parse_line(line[start:])
    return parse_event(raw) if isinstance(raw, dict) else None


class EventWriter:
    """Appends events to `events.jsonl`; each line is written whole and flushed."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / EVENTS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._tail_checked = False
        self.listeners: list[Callable[[Event], None]] = []

    def _newline_needed(self, fd: int) -> bool:
        """True when the file ends in a torn line (a previous engine died mid-write)."""
        size = os.fstat(fd).st_size
        return size > 0 and os.pread(fd, 1, size - 1) != b"\n"

    def emit(self, event: Event) -> Event:
        """Append one event (and tell in-process listeners, e.g. the CLI's progress printer)."""
        data = (event.to_json() + "\n").encode("utf-8")
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if not self._tail_checked:
                    # Start on a fresh line so our first event is not glued to a torn one.
                    if self._newline_needed(fd):
                        data = b"\n" + data
                    self._tail_checked = True
                os.write(fd, data)
            finally:
                os.close(fd)
        for listener in self.listeners:
            listener(event)
        return event


class QuietWriter(EventWriter):
    """The writer of a training process other than rank 0: tells listeners, writes nothing."""

    def emit(self, event: Event) -> Event:
        """Pass the event to in-process listeners only."""
        for listener in self.listeners:
            listener(event)
        return event


def superseded_after(event: Event) -> int | None:
    """For a resumed engine's `started`: the step beyond which earlier events were lost work."""
    if isinstance(event, Started) and event.resumed_from_step > 0:
        return event.resumed_from_step
    return None


def drop_superseded(events: list[Event]) -> list[Event]:
    """The events without the steps and evaluations a killed engine made after its last checkpoint.

    A resumed engine starts again from its checkpoint; the steps the dead engine logged beyond
    it were redone, so readers (the plot, the run list, elapsed time) must not count them twice.
    """
    out: list[Event] = []
    for event in events:
        cut = superseded_after(event)
        if cut is not None:
            out = [e for e in out if not (isinstance(e, (Step, Eval, Checkpoint)) and e.step > cut)]
        out.append(event)
    return out


def elapsed_at_step(events: list[Event], step: int) -> float:
    """Training seconds spent up to `step` (a checkpoint), from the logged steps."""
    kept = [e for e in drop_superseded(events) if isinstance(e, Step) and e.step <= step]
    if not kept:
        return 0.0
    last = kept[-1]
    saved = next(
        (e for e in reversed(events) if isinstance(e, Checkpoint) and e.step == step), None
    )
    extra = max(0.0, saved.time - last.time) if saved is not None and saved.time > last.time else 0
    # A checkpoint is written right after its step; more than a minute later means a pause.
    return round(last.elapsed_s + (extra if extra < 60 else 0.0), 2)


def training_elapsed(events: list[Event], now: float | None = None) -> float:
    """A run's elapsed time, the one definition every view shows: seconds of training.

    The engine's own clock (`elapsed_s` of its steps, carried over a resume from the last
    checkpoint), so loading, the wait in the queue and the pause between a stop and its resume
    never count. `now` (while the engine trains) adds the seconds since the latest step.
    """
    kept = drop_superseded(events)
    last_index = max((i for i, e in enumerate(kept) if isinstance(e, Step)), default=-1)
    final = next((e for e in reversed(kept) if e.type in FINAL_TYPES), None)
    if isinstance(final, Finished) and final.elapsed_s:
        return final.elapsed_s
    if last_index < 0:
        return 0.0
    last = kept[last_index]
    assert isinstance(last, Step)
    if not last.elapsed_s:  # steps written without the engine's clock: from `started` on
        began = next((e for e in reversed(kept[:last_index]) if isinstance(e, Started)), None)
        clock_s = max(0.0, last.time - began.time) if began is not None else 0.0
        last = replace(last, elapsed_s=round(clock_s, 2))
    after = kept[last_index + 1 :]
    ended = next((e for e in after if e.type in FINAL_TYPES), None)
    if ended is not None:
        # Where a resume carries on from: the checkpoint the stop saved.
        step = getattr(ended, "step", 0)
        saved = elapsed_at_step(kept, step) if isinstance(ended, Stopped) and step else 0.0
        return saved or last.elapsed_s
    if now is None or any(isinstance(e, Started) for e in after):
        return last.elapsed_s  # a restarted engine still loading stands where training stood
    return round(last.elapsed_s + max(0.0, now - last.time), 2)


def read_events(run_dir: str | Path) -> list[Event]:
    """Every complete event in a run directory (a half-written last line is skipped)."""
    reader = EventReader(run_dir)
    return reader.read_new()


class EventReader:
    """Reads a growing events file incrementally, holding back a half-written last line."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / EVENTS_FILE
        self.offset = 0
        self._partial = b""

    def read_new(self) -> list[Event]:
        """Events appended since the last call."""
        try:
            with open(self.path, "rb") as fh:
                if os.fstat(fh.fileno()).st_size < self.offset:
                    # The file was replaced or truncated (a run directory made anew): start over.
                    self.offset, self._partial = 0, b""
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        if not chunk:
            return []
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # empty when the chunk ended on a newline
        events = []
        for line in lines:
            event = parse_line(line.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        return events

    def follow(
        self, stop: threading.Event | None = None, poll_s: float = 0.25
    ) -> Iterator[list[Event]]:
        """Yield batches of new events until `stop` is set (an empty batch when nothing came)."""
        stop = stop or threading.Event()
        while not stop.is_set():
            yield self.read_new()
            stop.wait(poll_s)
