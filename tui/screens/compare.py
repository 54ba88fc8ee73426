"""Compare runs (or one sweep): overlaid train / eval curves and a sortable table of what differs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual_plotext import PlotextPlot

from engine.runs.queue import QueueEntry
from tui import keymap
from tui.format import STATE_STYLES, clock, metric_tag, number
from tui.plot_axes import integer_steps
from tui.runs_model.comparison import (
    COLOURS,
    SHORT_NAMES,
    RunSeries,
    differing,
    distinct_names,
    load_series,
    queued_series,
    setting_text,
    sweep_members,
)

REFRESH_S = 2.0


class CurvePlot(PlotextPlot):
    """Curves of several runs in one plot, each in its run's colour; no legend (the table is it)."""

    def show(
        self,
        title: str,
        lines: list[tuple[list[int], list[float], str, str]],
        last_step: int = 0,
    ) -> None:
        """Replace the curves: (x, y, colour, style) for each; style is 'line' (many points),
        'points' (dots only) or 'evals' (a few dots, joined)."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title)
        plt.xlabel("step")
        drawn = False
        for xs, ys, colour, style in lines:
            if not xs:
                continue
            drawn = True
            if style == "points":
                plt.scatter(xs, ys, color=colour, marker="•")
            elif style == "evals" and len(xs) <= 12:  # a few evaluations: visible even alone
                plt.plot(xs, ys, color=colour, marker="•")
            else:
                plt.plot(xs, ys, color=colour, marker="braille")
        if not drawn:
            plt.text("no points yet", 0.5, 0.5, alignment="center")
            plt.xlim(0, 1)
            plt.ylim(0, 1)
            self.refresh()
            return
        xs_all = [x for xs, _, _, _ in lines for x in xs]
        if last_step:  # the same step axis as the loss plot beside it
            plt.xlim(0, last_step)
            integer_steps(plt, 0, last_step)
        else:
            integer_steps(plt, min(xs_all), max(xs_all))
        ys_all = [y for _, ys, _, _ in lines for y in ys]
        low, high = min(ys_all), max(ys_all)
        if high - low < 0.02:  # one evaluation, or all alike: a readable band around it
            plt.ylim(low - 0.05, high + 0.05)
        self.refresh()


class CompareScreen(Screen[None]):
    """Any runs side by side: curves, the settings that differ, best and final metrics.

    For a sweep (`sweep_id`) the table starts sorted by the best metric, and the sweep's runs
    are looked up afresh on every refresh (queued runs are rows too, started ones move up). It refreshes while any run trains. Sort by clicking a header or with o.
    """

    CSS_PATH = "compare.tcss"
    BINDINGS = keymap.keys("compare")

    def __init__(
        self,
        run_dirs: list[Path],
        *,
        queued: list[QueueEntry] | None = None,
        title: str = "",
        sweep_id: str = "",
        root: Path | None = None,
    ) -> None:
        super().__init__()
        self.run_dirs = list(run_dirs)
        self.queued = list(queued or [])
        self.sweep_id = sweep_id
        self.root = root
        self.title_text = title or (
            f"sweep {sweep_id}" if sweep_id else f"compare {len(self.run_dirs)} runs"
        )
        self.series: list[RunSeries] = []
        self.columns: list[tuple[str, str]] = []
        self.sort_column = "best" if sweep_id else ""
        self.sort_reverse = True  # set from the metric on the first draw (a loss: lowest first)
        self._sort_chosen = False
        self._loading = False

    def compose(self) -> ComposeResult:
        """Two plots (loss; the task's metric), the table, a hint and the keys."""
        with Horizontal(id="plots"):
            yield CurvePlot(id="loss-plot")
            yield CurvePlot(id="metric-plot")
        yield DataTable(id="compare-table", cursor_type="row", zebra_stripes=True)
        yield Static("loading…", id="compare-note")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        """Load the runs, then reload every few seconds while any of them trains."""
        self.sub_title = self.title_text
        self.query_one("#plots").border_title = self.title_text
        self.set_interval(REFRESH_S, self._refresh_live)
        self.reload()

    def _refresh_live(self) -> None:
        if any(s.active for s in self.series) and not self._loading:
            self.reload()

    @work(thread=True, exit_on_error=False, group="compare-load")
    def reload(self) -> None:
        """Read every run's events off the UI thread."""
        self._loading = True
        try:
            if self.sweep_id and self.root is not None:
                self.run_dirs, self.queued = sweep_members(self.root, self.sweep_id)
            series = [load_series(p) for p in self.run_dirs if p.is_dir()]
            series += [queued_series(e, n) for n, e in enumerate(self.queued, start=1)]
        finally:
            self._loading = False
        self.app.call_from_thread(self.show, series)

    # -- drawing -----------------------------------------------------------------------------------
    def show(self, series: list[RunSeries]) -> None:
        """Draw the curves and fill the table."""
        self.series = [s for s in series if s.state != "queued"] + [
            s for s in series if s.state == "queued"
        ]
        distinct_names(self.series)
        colour = {s.key: COLOURS[i % len(COLOURS)] for i, s in enumerate(self.series)}
        metric_name = self.series[0].metric_name if self.series else "accuracy"
        if not self._sort_chosen and self.sort_column:
            self.sort_reverse = self._best_first(self.sort_column)  # the best run on top
        last_step = max((s.steps[-1] for s in self.series if s.steps), default=0)
        self.query_one("#loss-plot", CurvePlot).show(
            "loss: train ─ eval •",
            [(s.steps, s.losses, colour[s.key][0], "line") for s in self.series]
            + [
                _points(s.eval_steps, s.eval_losses) + (colour[s.key][0], "points")
                for s in self.series
            ],
            last_step=last_step,  # both plots on one step axis
        )
        self.query_one("#metric-plot", CurvePlot).show(
            f"eval {metric_name}",
            [
                _points(s.eval_steps, s.eval_metric) + (colour[s.key][0], "evals")
                for s in self.series
            ],
            last_step=last_step,
        )
        self._fill_table(colour, metric_name)
        live = sum(s.state in ("starting", "running") for s in self.series)
        waiting = sum(s.state == "queued" for s in self.series)
        parts = [f"{len(self.series)} runs"]
        if live:
            parts.append(f"{live} training (refreshes every {REFRESH_S:g} s)")
        if waiting:
            parts.append(f"{waiting} queued")
        parts.append("colours match the curves · o / a header sorts · enter opens")
        self.query_one("#compare-note", Static).update(Text(" · ".join(parts), style="dim"))

    def _fill_table(self, colour: dict[str, tuple[str, str]], metric_name: str) -> None:
        table = self.query_one(DataTable)
        diff = differing([s.config for s in self.series])
        # The best metric before the settings: at 80 columns it stays in view.
        columns = [("run", "run"), ("state", "state")]
        columns += [("best", f"best {metric_tag(metric_name)}")]
        columns += [(f"set:{n}", SHORT_NAMES.get(n, n.replace("_", " "))) for n in diff]
        finals = [
            k
            for k in ("accuracy", "f1", "loss")
            if k != metric_name and any(k in s.final for s in self.series)
        ]
        columns += [(f"final:{k}", {"accuracy": "acc"}.get(k, k)) for k in finals]
        columns += [("time", "time"), ("speed", "samples/s")]
        rows = [(s, self._cells(s, colour[s.key][1], diff, finals)) for s in self.series]
        if self.sort_column in dict(columns):
            index = [c for c, _ in columns].index(self.sort_column)
            present = [r for r in rows if r[1][index][0] is not None]
            missing = [r for r in rows if r[1][index][0] is None]
            present.sort(key=lambda r: r[1][index][0], reverse=self.sort_reverse)
            rows = present + missing
        current = self.selected_key
        if columns != self.columns:
            table.clear(columns=True)
            for key, label in columns:
                arrow = ""
                if key == self.sort_column:
                    arrow = " ▼" if self.sort_reverse else " ▲"
                table.add_column(label + arrow, key=key)
            self.columns = columns
        else:
            table.clear()
        for s, cells in rows:
            table.add_row(*[shown for _, shown in cells], key=s.key)
        keys = [s.key for s, _ in rows]
        if current in keys:
            table.move_cursor(row=keys.index(current))

    def _cells(
        self, s: RunSeries, colour: str, diff: list[str], finals: list[str]
    ) -> list[tuple[Any, Any]]:
        """(sort value, shown cell) for each column of a run's row."""
        cells: list[tuple[Any, Any]] = [
            (s.name, Text.assemble(("━━ ", colour), s.name)),
            (s.state, Text(s.state, style=STATE_STYLES.get(s.state, ""))),
        ]
        cells.append((s.best, number(s.best)))
        for name in diff:
            value = s.config.get(name) if s.config is not None else None
            sortable = value if isinstance(value, (int, float)) else str(value)
            cells.append((sortable, setting_text(s.config, name)))
        for k in finals:
            v = s.final.get(k)
            cells.append((v, number(v)))
        cells.append((s.duration_s or None, clock(s.duration_s or None)))
        speed = s.samples_per_s
        cells.append((speed, number(speed or None, ".0f")))
        return cells

    # -- keys ----------------------------------------------------------------------------------------
    @property
    def selected_key(self) -> str | None:
        """The row key under the cursor."""
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        try:
            return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        except Exception:  # noqa: BLE001 - the table is being rebuilt
            return None

    @property
    def selected(self) -> RunSeries | None:
        """The run under the cursor."""
        key = self.selected_key
        return next((s for s in self.series if s.key == key), None)

    @on(DataTable.HeaderSelected)
    def _header(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        if key == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = key, self._best_first(key)
        self._sort_chosen = True
        self._redraw()

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_open()

    def action_sort(self) -> None:
        """Sort by the next column."""
        keys = [c for c, _ in self.columns]
        if not keys:
            return
        i = keys.index(self.sort_column) + 1 if self.sort_column in keys else 0
        self.sort_column = keys[i % len(keys)]
        self.sort_reverse = self._best_first(self.sort_column)
        self._sort_chosen = True
        self._redraw()

    def action_reverse(self) -> None:
        """Reverse the sort order."""
        self.sort_reverse = not self.sort_reverse
        self._sort_chosen = True
        self._redraw()

    def _best_first(self, key: str) -> bool:
        """Whether a column sorts high values first (scores, speed) or low (a loss)."""
        metric_name = self.series[0].metric_name if self.series else "accuracy"
        if key == "best":
            return not metric_name.endswith(("loss", "perplexity"))
        return key in ("final:accuracy", "final:f1", "speed")

    def _redraw(self) -> None:
        self.columns = []  # the header arrow moves
        self.show(self.series)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Open, try and export need a run that has started (try / export: its adapter)."""
        if action in ("open", "tryit", "export"):
            s = self.selected
            if s is None or s.run_dir is None:
                return False
            if action != "open":
                return (s.run_dir / "adapter" / "adapter_config.json").is_file() or None
        return True

    def action_open(self) -> None:
        """Open the selected run's monitor."""
        if (s := self.selected) is not None and s.run_dir is not None:
            self.app.open_monitor(s.run_dir)  # type: ignore[attr-defined]

    def action_tryit(self) -> None:
        """Try the selected run's model."""
        if (s := self.selected) is not None and s.run_dir is not None:
            self.app.open_tryit(s.run_dir)  # type: ignore[attr-defined]

    def action_export(self) -> None:
        """Export the selected run's adapter."""
        if (s := self.selected) is not None and s.run_dir is not None:
            self.app.open_export(s.run_dir)  # type: ignore[attr-defined]

    def action_close(self) -> None:
        """Back to the run list."""
        self.app.pop_screen()

    @on(DataTable.RowHighlighted)
    def _moved(self) -> None:
        self.refresh_bindings()


def _points(xs: list[int], ys: list[float | None]) -> tuple[list[int], list[float]]:
    """The (x, y) pairs whose y is known."""
    pairs = [(x, y) for x, y in zip(xs, ys, strict=False) if y is not None]
    return [x for x, _ in pairs], [y for _, y in pairs]
