"""Follow a run: tail its events in a thread worker, and fold them into what the monitor shows."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual.message import Message

from engine.rundir.events import (
    FINAL_TYPES,
    Checkpoint,
    Eval,
    Event,
    EventReader,
    Failed,
    Finished,
    Phase,
    Sample,
    Started,
    Step,
    Stopped,
)
from tui.messages import RunEvents

POLL_S = 0.5
ALIVE_CHECK_S = 1.0
ACTIVE_STATES = ("starting", "running")


class RunWatcher:
    """Tails `events.jsonl` and reports batches of events and the run's state as messages.

    The first message carries the whole history in one batch; later ones only what is new.
    A state change with no new events (the engine died: `crashed`) is reported too.
    """

    def __init__(self, run_dir: Path, post: Callable[[Message], Any], poll_s: float = POLL_S):
        self.run_dir = run_dir
        self.post = post
        self.poll_s = poll_s
        self.reader = EventReader(run_dir)
        self.tail: list[Event] = []  # the last Started and any final events after it
        self.any_events = False
        self.state = ""
        self._checked_at = 0.0

    def poll(self) -> RunEvents | None:
        """Read what is new; return the message to post (None when nothing changed)."""
        try:
            events = self.reader.read_new()
        except OSError:  # an unreadable events file (the run list says why): show what we have
            events = []
        for event in events:
            if isinstance(event, Started):
                self.tail = [event]
            elif event.type in FINAL_TYPES:
                self.tail.append(event)
        self.any_events = self.any_events or bool(events)
        now = time.monotonic()
        state = self.state
        if events or not self.state or now - self._checked_at >= ALIVE_CHECK_S:
            self._checked_at = now
            state = self.current_state()
        history = not self.state
        if not events and state == self.state:
            return None
        self.state = state
        return RunEvents(self.run_dir, events, state, history=history)

    def current_state(self) -> str:
        """starting / running / finished / stopped / failed / crashed, as `engine.rundir.runs` says."""
        from engine.rundir.runs import (
            STATUS_FILE,
            derive_state,
            engine_alive,
            read_status,
            status_number,
        )

        alive = engine_alive(self.run_dir)
        launched_at = status_number(read_status(self.run_dir), "launched_at")
        state = derive_state(self.tail, alive, launched_at)
        if state == "crashed" and not self.any_events and not (self.run_dir / STATUS_FILE).exists():
            # The launcher has not written the status yet (a fresh directory): still starting.
            try:
                if time.time() - self.run_dir.stat().st_mtime < 30:
                    state = "starting"
            except OSError:
                pass
        return state

    def run(self, cancelled: Callable[[], bool]) -> None:
        """Poll until cancelled (call this in a thread worker)."""
        while not cancelled():
            message = self.poll()
            if message is not None:
                self.post(message)
            time.sleep(self.poll_s)


@dataclass
class LogLine:
    """A line for the log pane with its level (info, warning, error)."""

    text: str
    level: str = "info"


@dataclass
class RunProgress:
    """Everything the monitor draws, folded from a run's events (pure data, no widgets)."""

    run_id: str = ""
    model: str = ""
    state: str = ""
    phase: str = ""
    total_steps: int = 0
    train_size: int = 0
    eval_size: int = 0
    precision: str = ""
    threads: int = 0
    world_size: int = 1
    nnodes: int = 1
    nproc_per_node: int = 1
    config: dict[str, Any] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    evals: list[Eval] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    final: Event | None = None
    first_time: float = 0.0
    last_time: float = 0.0
    session_start: float = 0.0  # the first event of the latest engine (a resume starts anew)
    checkpoints: set[str] = field(default_factory=set)
    history: list[Event] = field(default_factory=list)  # every event, for the elapsed time

    def apply(self, events: list[Event]) -> list[LogLine]:
        """Fold a batch of events in; return the log lines they add."""
        from engine.cli.event_lines import format_event

        lines: list[LogLine] = []
        self.history.extend(events)
        for e in events:
            if not self.first_time:
                self.first_time = self.session_start = e.time
            elif self.final is not None and e.type not in FINAL_TYPES:
                self.session_start = e.time  # a new engine after a final event: a resume
            self.last_time = e.time
            if isinstance(e, Started):
                if e.resumed_from_step:
                    # A resumed engine redoes the steps after its checkpoint: drop the killed
                    # engine's copies so the plot never jumps back.
                    cut = e.resumed_from_step
                    self.steps = [s for s in self.steps if s.step <= cut]
                    self.evals = [v for v in self.evals if v.step <= cut]
                self.run_id, self.model, self.config = e.run_id, e.model, e.config
                self.total_steps, self.train_size, self.eval_size = (
                    e.total_steps,
                    e.train_size,
                    e.eval_size,
                )
                self.precision, self.threads, self.final = e.precision, e.threads, None
                self.world_size, self.nnodes = e.world_size, e.nnodes
                self.nproc_per_node = e.nproc_per_node
            elif isinstance(e, Phase):
                self.phase = e.name
            elif isinstance(e, Step):
                self.steps.append(e)
                self.total_steps = e.total_steps or self.total_steps
                continue  # steps go to the table, not the log
            elif isinstance(e, Eval):
                # One row per step: a resumed run evaluating the same step again replaces it.
                self.evals = [x for x in self.evals if x.step != e.step] + [e]
            elif isinstance(e, Sample):
                self.samples = [*self.samples[-20:], e]
                continue  # the samples pane shows these
            elif isinstance(e, Checkpoint):
                if e.path in self.checkpoints:
                    continue  # saved again at the same step (a stop at an epoch's end): one line
                self.checkpoints.add(e.path)
            elif e.type in FINAL_TYPES:
                self.final = e
                self.phase = e.type
            if isinstance(e, Phase) and e.name in ("training", "evaluating") and not e.detail:
                continue  # the table shows these; keep the log for what matters
            text = format_event(e)
            if text:
                level = getattr(e, "level", "error" if isinstance(e, Failed) else "info")
                lines.append(LogLine(text, level))
        return lines

    @property
    def last_step(self) -> Step | None:
        """The latest step event."""
        return self.steps[-1] if self.steps else None

    @property
    def step(self) -> int:
        """The step reached so far."""
        if isinstance(self.final, (Finished, Stopped)) and self.final.step:
            return self.final.step
        return self.last_step.step if self.last_step else 0

    @property
    def active(self) -> bool:
        """True while the engine is (or should be) working."""
        return self.state in ACTIVE_STATES

    def elapsed(self, now: float | None = None) -> float:
        """Training time so far (`engine.rundir.events.training_elapsed`, as the run list shows it)."""
        from engine.rundir.events import training_elapsed

        return training_elapsed(self.history, now if self.active else None)

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left, from the latest step's estimate (None when unknown or done)."""
        last = self.last_step
        if not self.active or last is None or last.eta_s is None:
            return None
        gone = max(0.0, now - last.time) if now is not None else 0.0
        return max(0.0, last.eta_s - gone)
