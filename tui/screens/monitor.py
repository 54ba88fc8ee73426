"""The live monitor of one run: progress, figures, evaluation, loss plot and the engine's log."""

from __future__ import annotations

import time
from pathlib import Path

from textual import events, work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Label, Sparkline
from textual.worker import get_current_worker

from engine.config.tasks import GENERATIVE_TASKS
from engine.rundir.events import Checkpoint, Finished, Stopped
from tui import keymap
from tui.key_reasons import explain_turned_off_key
from tui.messages import RunEvents
from tui.runs_model.run_rows import has_weights
from tui.watcher import RunProgress, RunWatcher
from tui.widgets.confusion import ConfusionView
from tui.widgets.event_log import EventLog
from tui.widgets.loss_plot import LossPlot
from tui.widgets.metric_tables import EvalTable, StepTable
from tui.widgets.run_header import RunHeader
from tui.widgets.samples import SamplesView

SPARK_POINTS = 120
TICK_S = 1.0  # at most one frame a second while a run trains: drawing costs it CPU


class MonitorScreen(Screen[None]):
    """Watch a run live (or its history): the run keeps going whatever this screen does."""

    CSS_PATH = "monitor.tcss"
    BINDINGS = keymap.keys("monitor")

    state: reactive[str] = reactive("", bindings=True)
    stop_sent: reactive[bool] = reactive(False, bindings=True)

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.progress = RunProgress()
        self.has_weights = False  # a final adapter or a checkpoint: Try and Export work
        self._dirty = False
        self._samples_seen = False

    @property
    def run_active(self) -> bool:
        """True while the engine works on this run (quitting asks first)."""
        return self.state in ("starting", "running")

    def compose(self) -> ComposeResult:
        """Header, tables, sparklines, then the plot and the log."""
        yield RunHeader(id="run-header")
        with Horizontal(id="tables"):
            yield StepTable(id="steps-table")
            yield EvalTable(id="eval-table")
        with Horizontal(id="sparks"):
            yield Label("loss", classes="spark-label")
            yield Sparkline([], id="loss-spark")
            yield Label("samples/s", classes="spark-label")
            yield Sparkline([], id="speed-spark")
            # preference runs: the training pairs' reward margin (hidden for other tasks)
            yield Label("margin", classes="spark-label margin-spark")
            yield Sparkline([], id="margin-spark", classes="margin-spark")
        with Horizontal(id="bottom"):
            yield LossPlot(id="loss-plot")
            yield EventLog(id="log")
            yield ConfusionView(id="confusion")
            with VerticalScroll(id="samples-pane"):  # long prompts: wheel, arrows and PgDn
                yield SamplesView(id="samples")
        yield Footer(show_command_palette=False, compact=True)

    def on_mount(self) -> None:
        """Draw the empty frame, then follow the run in a thread worker."""
        self.add_class("-view-log")
        self.render_progress()
        self.set_interval(TICK_S, self._tick)
        self.watch_run()

    @work(thread=True, exit_on_error=False, group="watcher")
    def watch_run(self) -> None:
        """Tail the run's events (the UI thread never waits on the engine)."""
        worker = get_current_worker()
        RunWatcher(self.run_dir, self.post_message).run(lambda: worker.is_cancelled)

    def on_run_events(self, message: RunEvents) -> None:
        """Fold a batch of events in and redraw once (a whole history is one batch)."""
        lines = self.progress.apply(message.events)
        self.progress.state = message.state
        changed = message.state != self.state
        if changed:
            self.state = message.state
        if changed or any(isinstance(e, Checkpoint) for e in message.events):
            self.has_weights = self._weights_saved()
            self.refresh_bindings()
        log = self.query_one(EventLog)
        for line in lines:
            log.add(line.text, line.level)
        if changed and message.state == "crashed":
            log.add("the engine process is gone without a final event (see engine.log)", "error")
        if message.history or changed:
            self.render_progress()
            self._dirty = False
        elif message.events:
            self._dirty = True  # drawn by the next tick: one frame a second at most

    def render_progress(self, tables: bool = True) -> None:
        """Redraw header, tables, sparklines and the plot from the folded events."""
        p = self.progress
        self.query_one(RunHeader).show(p, self.run_dir, time.time() if p.active else None)
        if not tables:
            return
        self.query_one(StepTable).show(p.steps)
        self.query_one(EvalTable).show(p.evals)
        recent = p.steps[-SPARK_POINTS:]
        self.query_one("#loss-spark", Sparkline).data = [
            s.loss for s in recent if s.loss is not None
        ]
        self.query_one("#speed-spark", Sparkline).data = [
            s.samples_per_s for s in recent if s.samples_per_s
        ]
        margins = [s.metrics["margin"] for s in recent if "margin" in s.metrics]
        for widget in self.query(".margin-spark"):
            widget.display = bool(margins)
        self.query_one("#margin-spark", Sparkline).data = margins
        self.query_one(LossPlot).show(p.steps, p.evals)
        if p.evals and p.evals[-1].metrics.get("confusion"):
            self.query_one(ConfusionView).show_eval(p.evals[-1].metrics, p.evals[-1].step)
            self.refresh_bindings()  # the Confusion key comes alive with the first evaluation
        if p.samples:
            self.query_one(SamplesView).show(p.samples)
            if not self._samples_seen:
                self._samples_seen = True
                self.refresh_bindings()

    def _tick(self) -> None:
        """Once a second: draw what arrived, and move elapsed / ETA on while the run is active."""
        if self._dirty:
            self._dirty = False
            self.render_progress()
        elif self.progress.active:
            self.query_one(RunHeader).show(self.progress, self.run_dir, time.time())

    def _weights_saved(self) -> bool:
        """A final adapter, or a checkpoint of a run still training (what Try and Export use)."""
        final = self.progress.final
        finished_with = final.output_dir if isinstance(final, (Finished, Stopped)) else ""
        if finished_with and (Path(finished_with) / "adapter_config.json").is_file():
            return True
        return has_weights(self.run_dir)

    # -- keys --------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Grey out keys that do nothing right now."""
        if action == "stop":
            return True if self.run_active and not self.stop_sent else None
        if action == "resume":
            return True if self.state in ("stopped", "failed", "crashed") else None
        if action == "toggle_metrics":
            if self.progress.samples or self.run_task() in GENERATIVE_TASKS:
                return False  # no matrix for a language model: the footer keeps room for ^q
            return True if any(e.metrics.get("confusion") for e in self.progress.evals) else None
        if action == "toggle_samples":  # hidden for tasks without sample generations
            return bool(self.progress.samples)
        if action in ("tryit", "export"):
            return True if self.has_weights else None
        if action == "toggle_view":  # only a small terminal shows the log or the plot, not both
            return True if self.has_class("-narrow") and self.has_class("-short") else None
        return True

    def on_key(self, event: events.Key) -> None:
        """A key whose action is turned off, pressed, says why."""
        explain_turned_off_key(self, event, self.why_not)

    def why_not(self, action: str) -> str:
        """Why a key does nothing now (shown when it is pressed)."""
        state = self.state or "not started"
        if action == "stop":
            if self.stop_sent:
                return "Stop already sent: the engine finishes the step and saves first."
            return f"Nothing to stop: the run is {state}."
        if action == "resume":
            if self.run_active:
                return "The run is training already."
            if state == "finished":
                return "The run has finished: nothing to resume (n tweaks it into a new run)."
            return f"Nothing to resume: the run is {state}."
        if action == "toggle_metrics":
            if self.progress.samples or self.run_task() in GENERATIVE_TASKS:
                return "A language model has no confusion matrix: g shows sample answers."
            return "No confusion matrix yet: it comes with the first evaluation."
        if action == "toggle_samples":
            if self.run_task() in GENERATIVE_TASKS:
                return "No sample answers yet: they come with the first evaluation."
            return "Sample answers are for causal-lm runs; m shows this run's confusion matrix."
        if action in ("tryit", "export"):
            return "No weights saved yet: the first checkpoint (or the end of the run) writes them."
        if action == "toggle_view":
            return "The plot and the log are both on screen at this size (v switches at 80x24)."
        return ""

    def run_task(self) -> str:
        """The run's task, from its `started` event ('' before it)."""
        return str(self.progress.config.get("task", ""))

    def on_resize(self) -> None:
        """The terminal's size decides whether v does anything."""
        self.refresh_bindings()

    def action_stop(self) -> None:
        """Ask the engine to stop gracefully (it finishes the step and saves first)."""
        from engine.runs.launch import request_stop

        if request_stop(self.run_dir):
            self.stop_sent = True
            self.notify("Stopping: the engine finishes this step and saves the adapter.")
        else:
            self.notify("The engine is not running.", severity="warning")

    def action_resume(self) -> None:
        """Continue the run from its last checkpoint in a new engine process."""
        from engine.core.errors import UserError
        from engine.runs.launch import resume

        try:
            resume(self.run_dir)
        except UserError as exc:
            self.notify(exc.one_line(), severity="error")
            return
        self.stop_sent = False
        self.state = "starting"
        self.notify("Resuming from the last checkpoint.")

    def action_setup(self) -> None:
        """Back to the setup form, prefilled with this run's settings (the run keeps going)."""
        from engine.config import RunConfig
        from engine.core.errors import UserError

        try:
            config = RunConfig.load(self.run_dir / "config.toml")
        except UserError as exc:
            self.notify(f"cannot read this run's config: {exc.one_line()}", severity="warning")
            config = RunConfig()
        config.output.sweep_id = ""  # a tweak is a run of its own
        # Building the form takes a moment on a busy machine: say so first, then build it.
        self.notify("Opening the setup form with this run's settings…", timeout=4)
        self.call_after_refresh(self.app.open_setup, config)

    def action_toggle_view(self) -> None:
        """On a small terminal, switch the bottom pane between the log and the loss plot."""
        if self.has_class("-view-metrics"):  # leave the matrix for the plot, visibly
            self.remove_class("-view-metrics", "-view-log")
            self.add_class("-view-plot")
            return
        plot = self.has_class("-view-log")
        self.set_class(not plot, "-view-log")
        self.set_class(plot, "-view-plot")

    def action_toggle_metrics(self) -> None:
        """Show the latest confusion matrix and per-class table in place of the log (and back)."""
        self.remove_class("-view-samples")
        self.toggle_class("-view-metrics")

    def action_toggle_samples(self) -> None:
        """Show the latest sample generations beside their references in place of the log."""
        self.remove_class("-view-metrics")
        self.toggle_class("-view-samples")
        pane = self.query_one("#samples-pane", VerticalScroll)
        if self.has_class("-view-samples"):
            pane.focus()  # up / down / PgUp / PgDn scroll long prompts and answers
        elif pane.has_focus:
            self.set_focus(None)

    def action_tryit(self) -> None:
        """Try the trained adapter on a sentence."""
        self.app.open_tryit(self.run_dir)

    def action_export(self) -> None:
        """Export the adapter or a merged model."""
        self.app.open_export(self.run_dir)

    def action_runs(self) -> None:
        """Show the run list."""
        self.app.open_runs()
