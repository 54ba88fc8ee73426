"""The top of the monitor: run name and state, a message when it failed, progress and times."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import ProgressBar, Static

from engine.models.loading import model_label
from engine.rundir.events import Failed, Finished, Stopped
from tui.format import clock
from tui.watcher import RunProgress

STATE_TEXT = {
    "starting": "starting",
    "running": "running",
    "finished": "finished",
    "stopped": "stopped",
    "failed": "failed",
    "crashed": "engine gone",
}


def scale_text(p: RunProgress) -> str:
    """World size, machines and throughput per machine of a run on several processes."""
    if p.nnodes <= 1:
        return f"{p.world_size} processes"
    text = f"{p.nnodes} machines x {p.nproc_per_node} processes"
    last = p.last_step
    if last is not None and last.samples_per_s:
        text += f", {last.samples_per_s / p.nnodes:.1f} samples/s per machine"
    return text


class RunHeader(Vertical):
    """Run name, state badge, phase; a failure message; the progress bar with step and times."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown: dict[str, Content] = {}

    def compose(self) -> ComposeResult:
        """Title line, message line, progress line."""
        with Horizontal(id="run-title-row"):
            yield Static("", id="run-title")
            yield Static("", id="run-state")
        yield Static("", id="run-message")
        with Horizontal(id="run-progress-row"):
            yield ProgressBar(total=1, show_eta=False, id="run-progress")  # no pulsing: idle CPU
            yield Static("", id="run-times")

    def show(self, p: RunProgress, run_dir: Path, now: float | None) -> None:
        """Draw from the folded run (now = wall time while active, None for a still frame)."""
        model = model_label(p.model) if p.model.startswith("/") else p.model
        title = p.run_id or run_dir.name
        self._set(
            "#run-title", Content.assemble((title, "bold"), (f"  {model}" if model else "", "dim"))
        )
        badge = self.query_one("#run-state", Static)
        shown = p.phase if p.active and p.phase else STATE_TEXT.get(p.state, p.state or "…")
        self._set("#run-state", Content(f" {shown} "))
        for state in STATE_TEXT:
            badge.set_class(p.state == state, f"-{state}")
        message = self.query_one("#run-message", Static)
        text = Content("")
        if isinstance(p.final, Failed):
            where = f"{p.final.where}: " if p.final.where else ""
            text = Content.assemble(
                (where + p.final.message, "bold"), f"\n{p.final.hint}" if p.final.hint else ""
            )
        elif p.state == "crashed":
            text = Content.assemble(
                ("The engine process ended without a final event", "bold"),
                " (killed, out of memory, or the machine restarted).\n"
                "Details in engine.log; r resumes from the last checkpoint.",
            )
        elif isinstance(p.final, Stopped):
            text = Content(f"Stopped at step {p.final.step}; adapter saved in {p.final.output_dir}")
        elif isinstance(p.final, Finished):
            text = Content(f"Finished; adapter saved in {p.final.output_dir}")
        if self._set("#run-message", text):
            message.display = bool(text)
        message.set_class(p.state in ("failed", "crashed"), "-error")
        bar = self.query_one(ProgressBar)
        if p.total_steps:
            bar.update(total=p.total_steps, progress=min(p.step, p.total_steps))
        parts = [] if p.total_steps or p.state else ["waiting for the engine"]
        if p.total_steps:
            parts.append(f"step {p.step}/{p.total_steps}")
        parts.append(f"{clock(p.elapsed(now))} elapsed")
        if p.world_size > 1:
            parts.append(scale_text(p))
        if p.active:
            parts.append(f"ETA {clock(p.eta(now))}")
        self._set("#run-times", Content(" · ".join(parts)))

    def _set(self, selector: str, content: Content) -> bool:
        """Update a Static only when its text changes (each update costs a layout pass)."""
        if self._shown.get(selector) == content:
            return False
        self._shown[selector] = content
        self.query_one(selector, Static).update(content)
        return True
