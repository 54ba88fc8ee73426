"""The Textual application: owns the runs root and moves between screens."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import App

from engine.config import RunConfig
from tui import keymap
from tui.endings import EndingWatcher

ENDINGS_S = 3.0


class FinetuneApp(App[None]):
    """finetune-tui: set up a LoRA run, watch it live, try it, export it."""

    TITLE = "finetune-tui"
    CSS_PATH = "app.tcss"
    BINDINGS = keymap.keys("app")
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]

    def __init__(self, runs_root: Path, attach_to: Path | None = None) -> None:
        super().__init__()
        self.runs_root = runs_root
        self.attach_to = attach_to
        self.last_folder: Path | None = None  # where the file picker chose a file last
        self.endings = EndingWatcher(runs_root)

    # -- the bell / OSC 9 when a run (or the queue) ends: off unless a run's config asks -----------
    @work(thread=True, group="endings", exclusive=True, exit_on_error=False)
    def watch_endings(self) -> None:
        """Look for runs that have just ended (a thread: it reads status files)."""
        for kind, text in self.endings.poll():
            self.call_from_thread(self.ring, kind, text)

    def ring(self, kind: str, text: str) -> None:
        """Ring the terminal bell, or send an OSC 9 desktop notification, and show a toast."""
        self.notify(text, title="finetune-tui")
        if kind == "osc9" and self._driver is not None:
            self._driver.write(f"\x1b]9;{text}\x07")
        else:
            self.bell()

    def on_mount(self) -> None:
        """Open the monitor of a run given on the command line, else the run list or setup."""
        self.set_interval(ENDINGS_S, self.watch_endings)
        if self.attach_to is not None:
            self.open_monitor(self.attach_to)
        elif self._has_runs():
            self.open_runs()
        else:
            self.open_setup()

    def _has_runs(self) -> bool:
        """True when the runs root holds a run (an unreadable root opens the setup form)."""
        from engine.core.errors import UserError
        from engine.rundir.runs import run_dirs

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
    def open_setup(self, config: RunConfig | None = None, queue_entry: str = "") -> None:
        """Show the setup form, optionally filled from a config (e.g. to tweak and run again).

        When the screen below the current one is a setup form, go back to it instead of
        stacking another one. `queue_entry` edits that queued run instead of starting a new one.
        """
        from tui.screens.setup import SetupScreen

        stack = self.screen_stack
        below = stack[-2] if len(stack) >= 2 else None
        if isinstance(below, SetupScreen):
            self.pop_screen()
            below.queue_entry = queue_entry
            if config is not None:
                below.load_config(config)
            return
        self.push_screen(SetupScreen(config, queue_entry=queue_entry))

    def open_monitor(self, run_dir: Path) -> None:
        """Show the live monitor of a run (re-attaching rebuilds it from the event history)."""
        from tui.screens.monitor import MonitorScreen

        self.push_screen(MonitorScreen(run_dir))

    def open_runs(self) -> None:
        """Show the run list (going back to it when it is already open below)."""
        from tui.screens.runs import RunsScreen

        stack = self.screen_stack
        for depth, screen in enumerate(reversed(stack)):
            if isinstance(screen, RunsScreen):
                for _ in range(depth):
                    self.pop_screen()
                return
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
    from engine.core.errors import UserError
    from engine.tasks import get_task

    try:
        task = get_task(RunConfig.load(Path(run_dir) / "config.toml").task)
    except UserError:
        return "labels"
    return getattr(task, "tryit", "labels")
