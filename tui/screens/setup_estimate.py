"""The setup form's Estimate: a preflight in its own process, shown in the status line."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.widgets import Static

from engine.config import RunConfig
from tui.messages import PreflightDone
from tui.screens.setup_form import FormMixin


class EstimateMixin(FormMixin):
    """Ctrl+E on the setup form: time a few real steps of the form's run before starting it."""

    estimating: bool

    def action_estimate(self) -> None:
        """Time a few real training steps: speed, run time and peak memory, before starting."""
        self.revalidate()
        if not self.valid or self.estimating:
            return
        self.estimating = True
        self.query_one("#setup-status", Static).update("Estimating: timing a few steps…")
        self.run_preflight(self.form_config())

    @work(thread=True, exit_on_error=False, group="preflight")
    def run_preflight(self, config: RunConfig) -> None:
        """Run `finetune-tui preflight` in its own process (torch stays out of the UI)."""
        import subprocess
        import sys
        import tempfile

        from engine.rundir.runs import list_runs

        if any(r.active for r in list_runs(self.app.runs_root)):
            # Two trainings on the same cores slow each other badly and skew the estimate.
            self.post_message(PreflightDone(error="a run is training now: estimate once it ends"))
            return
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "preflight.toml"
            config.save(path)
            proc = subprocess.run(
                [sys.executable, "-m", "engine.cli", "preflight", "--config", str(path)],
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
            )
        if proc.returncode:
            error = (proc.stderr.strip().splitlines() or ["the estimate failed"])[-1]
            self.post_message(PreflightDone(error=error.removeprefix("error: ")))
        else:
            self.post_message(PreflightDone(lines=proc.stdout.strip().splitlines()))

    def on_preflight_done(self, message: PreflightDone) -> None:
        """Show the estimate in the status line (and as a notification)."""
        self.estimating = False
        status = self.query_one("#setup-status", Static)
        if message.error:
            status.update(f"Estimate: {message.error}")
            self.notify(message.error, title="Estimate", severity="warning")
            return
        status.update("Estimate: " + " · ".join(message.lines[:2]))
        self.notify("\n".join(message.lines), title="Estimate", timeout=15)
