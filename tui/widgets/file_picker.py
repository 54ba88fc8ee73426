"""A modal that picks a data file from a folder tree (only data files and folders are shown)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Button, DirectoryTree, Input, Label

from engine.data.readers import FORMATS
from tui import keymap


class DataFileTree(DirectoryTree):
    """A DirectoryTree showing folders and data files, without hidden entries."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        """Keep folders and files with a data extension."""
        return [
            p
            for p in paths
            if not p.name.startswith(".") and (p.is_dir() or p.suffix.lower() in FORMATS)
        ]


def typed_path(value: str) -> Path:
    """What a typed path means: as in Emacs's find-file, typing '/' or '~/' after the folder
    shown starts over ('/data/runs//etc/x' is '/etc/x', '/data/runs/~/x' is '~/x')."""
    text = value.strip()
    home = text.rfind("/~/") if not text.endswith("/~") else len(text) - 2
    restart = max(text.rfind("//"), home)
    if restart >= 0:
        text = text[restart + 1 :]
    return Path(text).expanduser()


class PathSuggester(Suggester):
    """Completes a typed path from the folder it names (tab / right arrow accepts)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        """The first entry of the folder that starts with what was typed after the last '/'."""
        if not value or value.endswith("/"):
            return None
        path = typed_path(value)
        try:
            names = sorted(p.name for p in path.parent.iterdir() if not p.name.startswith("."))
        except OSError:
            return None
        match = next((n for n in names if n.startswith(path.name) and n != path.name), None)
        return value[: len(value) - len(path.name)] + match if match else None


class PathInput(Input):
    """The picker's path field: tab completes the suggested name (then moves on, as usual)."""

    BINDINGS = [Binding("tab", "complete", "Complete", show=False)]

    def action_complete(self) -> None:
        """Take the suggestion; with none, go to the next widget."""
        if self._suggestion and self._suggestion != self.value:
            self.value = self._suggestion
            self.cursor_position = len(self.value)
        else:
            self.screen.focus_next()


class FilePicker(ModalScreen[Path | None]):
    """Pick a data file: type a path (enter), jump home or to the last folder, or walk the tree."""

    AUTO_FOCUS = "#picker-tree"  # arrows walk the tree; / types a path; ~ and - jump
    BINDINGS = keymap.keys("file_picker")

    def __init__(self, start: Path | None = None, last: Path | None = None) -> None:
        super().__init__()
        start = (start or Path.cwd()).expanduser()
        self.folder = start if start.is_dir() else start.parent
        if not self.folder.is_dir():
            self.folder = Path.cwd()
        self.last = last if last is not None and last.is_dir() else None

    def compose(self) -> ComposeResult:
        """A path input (type any folder or file), shortcuts, then the tree."""
        with Vertical(id="picker"):
            yield Label("Choose a data file (.jsonl .json .csv .tsv .parquet)", id="picker-title")
            with Horizontal(id="picker-row"):
                yield PathInput(
                    str(self.folder),
                    id="picker-folder",
                    compact=True,
                    select_on_focus=False,  # / then typing continues the path
                    suggester=PathSuggester(),
                    placeholder="type a folder or file path, enter goes there",
                )
                yield Button("~ Home", id="picker-home", compact=True)
                yield Button("- Last", id="picker-last", compact=True, disabled=self.last is None)
            yield DataFileTree(self.folder, id="picker-tree")
            yield Label(
                "/ type a path (tab completes) · ~ home · - last · backspace up · esc cancel",
                id="picker-help",
            )

    def on_mount(self) -> None:
        """Start in the tree."""
        self.query_one(DataFileTree).focus()

    def _go(self, folder: Path) -> None:
        self.folder = folder
        self.query_one("#picker-folder", Input).value = str(folder)
        self.query_one(DataFileTree).path = folder

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Jump to a typed folder, or choose a typed file."""
        path = typed_path(event.value)
        if path.is_file():
            self.dismiss(path)
        elif path.is_dir():
            self._go(path.resolve())
            self.query_one(DataFileTree).focus()
        else:
            self.notify(f"no such folder: {path}", severity="warning")

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        """A file was chosen."""
        event.stop()
        self.dismiss(event.path)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Home / Last buttons."""
        event.stop()
        if event.button.id == "picker-home":
            self.action_home()
        elif event.button.id == "picker-last":
            self.action_last()

    def action_home(self) -> None:
        """Show the home folder."""
        self._go(Path.home())
        self.query_one(DataFileTree).focus()

    def action_last(self) -> None:
        """Show the folder a file was last chosen from."""
        if self.last is not None:
            self._go(self.last)
            self.query_one(DataFileTree).focus()

    def action_type_path(self) -> None:
        """Type a path instead of walking the tree."""
        editor = self.query_one("#picker-folder", Input)
        if not editor.value.endswith("/"):  # a name typed next goes inside the folder shown
            editor.value += "/"
        editor.focus()
        editor.cursor_position = len(editor.value)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Letters typed into the path field stay there (~, -, / and backspace included)."""
        typing = isinstance(self.focused, Input)
        return not (typing and action in ("home", "last", "type_path", "up"))

    def action_up(self) -> None:
        """Show the parent folder."""
        self._go(self.folder.parent)

    def action_cancel(self) -> None:
        """Close without choosing."""
        self.dismiss(None)
