"""The setup form's Start and Queue: its run in a new engine, or in the queue (a sweep too)."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.widgets import Static

from engine.config import RunConfig
from engine.core.errors import ConfigError, UserError
from tui.messages import RunLaunched
from tui.screens.setup_form import FormMixin
from tui.widgets.form_field import form_words


class LaunchMixin(FormMixin):
    """Ctrl+R / Ctrl+G on the setup form: start the run in a new engine, or add it to the queue."""

    starting: bool
    _refused_with: dict[str, Any] | None

    def action_start(self) -> None:
        """Launch the engine with the form's config, then open the monitor (a sweep is queued)."""
        self.revalidate()
        if not self.valid or self.starting:
            return
        if self.sweep_values() or self.queue_entry:
            self.action_queue()
            return
        self.starting = True
        self.query_one("#setup-status", Static).update("Starting the engine…")
        self.launch_run(self.form_config())

    @work(thread=True, exit_on_error=False, group="launch")
    def launch_run(self, config: RunConfig) -> None:
        """Create the run directory and start the engine process."""
        from engine.runs.launch import launch

        try:
            run_dir = launch(config, self.app.runs_root)
        except UserError as exc:
            self.post_message(RunLaunched(error=exc))
        except OSError as exc:
            self.post_message(RunLaunched(error=UserError(f"cannot start the engine: {exc}")))
        else:
            self.post_message(RunLaunched(run_dir=run_dir))

    def on_run_launched(self, message: RunLaunched) -> None:
        """Open the monitor, or show why the run could not start."""
        self.starting = False
        if message.queued:
            self.queue_entry = ""
            self.revalidate()
            self.app.clear_notifications()
            self.app.open_runs()
            self.app.notify(message.queued, title="Queue")
            return
        if message.run_dir is not None:
            self.revalidate()
            self.app.clear_notifications()  # an estimate's toast would sit on the new run's log
            self.app.open_monitor(message.run_dir)
            return
        exc = message.error
        assert exc is not None
        if isinstance(exc, ConfigError):
            problems = exc.problems
        else:
            problems = {exc.field: exc.message + (f" ({exc.hint})" if exc.hint else "")}
        for path, text in problems.items():
            field = self.fields.get(path.split(".")[-1])
            if field is not None:
                field.set_external(text, until_changed=True)
        self._refused_with = self._form_text()
        self.revalidate()
        self.notify(form_words(exc.one_line()), title="Could not start", severity="error")

    def action_queue(self) -> None:
        """Add the form's run (or every run of its sweep) to the queue; it starts when its turn
        comes, at once when nothing is training. Editing a queued run saves it back instead."""
        self.revalidate()
        if not self.valid or self.starting:
            return
        self.starting = True
        self.query_one("#setup-status", Static).update("Queueing…")
        self.queue_runs(self.form_config(), self.sweep_values(), self.queue_entry)

    @work(thread=True, exit_on_error=False, group="launch")
    def queue_runs(self, config: RunConfig, sweep: dict[str, list[Any]], entry: str) -> None:
        """Write the queue entries (and start the first when no engine is busy)."""
        from engine.runs import queue

        root = self.app.runs_root
        try:
            if entry:
                queue.update(root, entry, config)
                text = f"saved the queued run {config.output.run_name or entry}"
            else:
                added = queue.add_sweep(root, config, sweep) if sweep else [queue.add(root, config)]
                text = f"queued {len(added)} run{'s' if len(added) > 1 else ''}"
            started = queue.start_next(root)
            if started is not None:
                text += f"; started {started.name}"
        except UserError as exc:
            self.post_message(RunLaunched(error=exc))
        except OSError as exc:
            self.post_message(RunLaunched(error=UserError(f"cannot queue: {exc}")))
        else:
            self.post_message(RunLaunched(queued=text))
