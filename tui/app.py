"""The Textual application: owns the runs root and moves between screens."""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.binding import Binding

from engine.config import RunConfig


class FinetuneApp(App[None]):
    """finetune-tui: set up a LoRA run, watch it live, try it, export it."""

    TITLE = "finetune-tui"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]

    def __init__(self, runs_root: Path, attach_to: Path | None = None) -> None:
        super().__init__()
        self.runs_root = runs_root
        self.attach_to = attach_to

    def on_mount(self) -> None:
        """Open the monitor of a run given on the command line, else the run list or setup."""
        if self.attach_to is not None:
            self.open_monitor(self.attach_to)
        elif self._has_runs():
            self.open_runs()
        else:
            self.open_setup()

    def _has_runs(self) -> bool:
        """True when the runs root holds a run (an unreadable root opens the setup form)."""
        from engine.errors import UserError
        from engine.runs import run_dirs

        try:
            return bool(run_dirs(self.runs_root))
        except UserError:
            return False

    async def action_quit(self) -> None:
        """Quit; when a run is being watched live, ask first (the run keeps going either way)."""
        if not any(getattr(s, "run_active", False) for s in self.screen_stack):
            self.exit()
            return
        from tui.widgets.dialogs import Confirm

        def answered(yes: bool | None) -> None:
            if yes:
                self.exit()

        if not isinstance(self.screen, Confirm):
            self.push_screen(
                Confirm(
                    "A run is still training. Quit the app?\n\nThe run keeps going; "
                    "`finetune-tui attach` shows it again.",
                    yes="Quit",
                    no="Stay",
                ),
                answered,
            )

    # -- navigation (screens are imported lazily so start-up stays fast) -------------------------
    def open_setup(self, config: RunConfig | None = None) -> None:
        """Show the setup form, optionally filled from a config (e.g. to tweak and run again).

        When the screen below the current one is a setup form, go back to it instead of
        stacking another one.
        """
        from tui.screens.setup import SetupScreen

        stack = self.screen_stack
        below = stack[-2] if len(stack) >= 2 else None
        if isinstance(below, SetupScreen):
            self.pop_screen()
            if config is not None:
                below.load_config(config)
            return
        self.push_screen(SetupScreen(config))

    def open_monitor(self, run_dir: Path) -> None:
        """Show the live monitor of a run (re-attaching rebuilds it from the event history)."""
        from tui.screens.monitor import MonitorScreen

        self.push_screen(MonitorScreen(run_dir))

    def open_runs(self) -> None:
        """Show the run list."""
        from tui.screens.runs import RunsScreen

        self.push_screen(RunsScreen())

    def open_tryit(self, run_dir: Path) -> None:
        """Show the try-it screen its task asks for: labels, or a chat for a language model."""
        if tryit_kind(run_dir) == "chat":
            from tui.screens.chat import ChatScreen

            self.push_screen(ChatScreen(run_dir))
            return
        from tui.screens.tryit import TryItScreen

        self.push_screen(TryItScreen(run_dir))

    def open_export(self, run_dir: Path) -> None:
        """Show the export dialog for a run."""
        from tui.screens.export import ExportScreen

        self.push_screen(ExportScreen(run_dir))


def tryit_kind(run_dir: Path) -> str:
    """'chat' or 'labels': the try-it screen of the run's task (labels when unreadable)."""
    from engine.config import RunConfig
    from engine.errors import UserError
    from engine.tasks import get_task

    try:
        task = get_task(RunConfig.load(Path(run_dir) / "config.toml").task)
    except UserError:
        return "labels"
    return getattr(task, "tryit", "labels")
