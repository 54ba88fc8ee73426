"""A modal that picks a data file from a folder tree (only data files and folders are shown)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Input, Label

from engine.readers import FORMATS


class DataFileTree(DirectoryTree):
    """A DirectoryTree showing folders and data files, without hidden entries."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        """Keep folders and files with a data extension."""
        return [
            p
            for p in paths
            if not p.name.startswith(".") and (p.is_dir() or p.suffix.lower() in FORMATS)
        ]


class FilePicker(ModalScreen[Path | None]):
    """Pick a data file: type a folder (enter) or walk the tree; enter on a file chooses it."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("backspace", "up", "Parent folder"),
    ]

    def __init__(self, start: Path | None = None) -> None:
        super().__init__()
        start = (start or Path.cwd()).expanduser()
        self.folder = start if start.is_dir() else start.parent
        if not self.folder.is_dir():
            self.folder = Path.cwd()

    def compose(self) -> ComposeResult:
        """Folder input above the tree."""
        with Vertical(id="picker"):
            yield Label("Choose a data file (.jsonl .json .csv .tsv .parquet)", id="picker-title")
            yield Input(str(self.folder), id="picker-folder", compact=True)
            yield DataFileTree(self.folder, id="picker-tree")
            yield Label(
                "enter: open / choose   backspace: parent folder   esc: cancel", id="picker-help"
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
        path = Path(event.value).expanduser()
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

    def action_up(self) -> None:
        """Show the parent folder."""
        self._go(self.folder.parent)

    def action_cancel(self) -> None:
        """Close without choosing."""
        self.dismiss(None)
