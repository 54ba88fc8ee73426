"""What the chosen data file holds: format, sizes, label counts and the first rows."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from engine.tasks.inspect import DataInfo
from tui.widgets.label_bars import LabelBars

CELL_WIDTH = 48


def _cell(value: object) -> Text:
    text = " ".join(str(value).split())
    return Text(text if len(text) <= CELL_WIDTH else text[: CELL_WIDTH - 1] + "…")


def render_example(pieces: list[tuple[str, bool]]) -> Text:
    """A training example as the model sees it: the trained part highlighted, the rest dim."""
    text = Text("one training example (highlighted = trained):\n", style="bold")
    for piece, trained in pieces:
        text.append(piece, style="bold black on green" if trained else "dim")
    return text


class DataPreview(Vertical):
    """Summary line, label bars and a table of the first rows of a data file."""

    def compose(self) -> ComposeResult:
        """Summary, bars, table."""
        yield Static("reading the data…", id="data-summary", markup=False)
        yield LabelBars(id="data-bars")
        example = Static("", id="data-example")
        example.display = False
        yield example
        yield DataTable(id="data-table", zebra_stripes=True, cursor_type="none")

    def show(self, info: DataInfo | None) -> None:
        """Show a data file's details (None: the file could not be read)."""
        summary = self.query_one("#data-summary", Static)
        bars = self.query_one(LabelBars)
        table = self.query_one(DataTable)
        table.clear(columns=True)
        if info is None:
            summary.update("")
            bars.show_counts({})
            table.display = False
            return
        text = (
            f"{info.format.upper()}, {info.total_rows:,} rows, columns: {', '.join(info.columns)}"
        )
        if info.error is None:
            text += (
                f"\n{info.train_size:,} train / {info.eval_size:,} validation "
                f"({info.eval_source}); "
                + (
                    f"text = '{info.text_column}', label = '{info.label_column}'"
                    if info.label_column
                    else f"format: {info.text_column}"
                )
            )
        summary.update(text)
        bars.show_counts(info.label_counts)
        example = self.query_one("#data-example", Static)
        example.display = bool(info.example)
        example.update(render_example(info.example) if info.example else "")
        table.display = bool(info.preview)
        if info.preview:
            table.add_columns(*(Text(c) for c in info.columns))
            for row in info.preview:
                table.add_row(*(_cell(row.get(c, "")) for c in info.columns))
