"""Compare runs: their training-loss curves overlaid in one plot (a modal screen)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Static
from textual_plotext import PlotextPlot

from engine.events import Eval, Step, drop_superseded, read_events
from tui.widgets.runfmt import metric, run_name


@dataclass
class LossSeries:
    """One run's train loss by step (a resumed run's repeated steps keep their latest value)."""

    name: str
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=dict)


def load_series(run_dir: Path) -> LossSeries:
    """Read a run's events and build its loss curve (call from a worker: it reads the disk)."""
    by_step: dict[int, float] = {}
    best: dict[str, float] = {}
    for event in drop_superseded(read_events(run_dir)):
        if isinstance(event, Step) and event.loss is not None:
            by_step[event.step] = event.loss
        elif isinstance(event, Eval):
            for key in ("accuracy", "f1"):
                value = event.metrics.get(key)
                if isinstance(value, (int, float)) and value > best.get(key, -1.0):
                    best[key] = float(value)
    steps = sorted(by_step)
    return LossSeries(run_name(run_dir.name), steps, [by_step[s] for s in steps], best)


class LossPlot(PlotextPlot):
    """Training-loss curves of one or more runs, overlaid."""

    def show(self, series: list[LossSeries]) -> None:
        """Replace the plotted curves."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("train loss by step")
        plt.xlabel("step")
        for s in series:
            if s.steps:
                plt.plot(s.steps, s.losses, label=s.name[:24], marker="braille")
        self.refresh()


class CompareScreen(ModalScreen[None]):
    """Overlay the loss curves of the marked runs; Escape closes."""

    DEFAULT_CSS = """
    CompareScreen {
        align: center middle;
    }
    CompareScreen > Vertical {
        width: 100%;
        height: 100%;
        border: round $accent;
        background: $surface;
    }
    CompareScreen LossPlot {
        height: 1fr;
        min-height: 8;
    }
    CompareScreen #summary {
        height: auto;
        max-height: 6;
        padding: 0 1;
    }
    """
    BINDINGS = [Binding("escape,q,c", "close", "Close")]

    def __init__(self, run_dirs: list[Path]) -> None:
        super().__init__()
        self.run_dirs = list(run_dirs)

    def compose(self) -> ComposeResult:
        """The plot, a one-line-per-run summary and the key hints."""
        with Vertical():
            yield LossPlot()
            yield Static("loading…", id="summary")
        yield Footer()

    def on_mount(self) -> None:
        """Load the runs' events in a worker."""
        self.query_one(Vertical).border_title = f"compare {len(self.run_dirs)} runs"
        self.load()

    @work(thread=True, exit_on_error=False)
    def load(self) -> None:
        """Read every run's events off the UI thread."""
        series = [load_series(p) for p in self.run_dirs]
        self.app.call_from_thread(self.show, series)

    def show(self, series: list[LossSeries]) -> None:
        """Plot the curves and write the summary."""
        self.query_one(LossPlot).show(series)
        lines = []
        for s in series:
            last = f"loss {s.losses[-1]:.4f} @ step {s.steps[-1]}" if s.steps else "no steps yet"
            best = "  ".join(f"best {k} {metric(v)}" for k, v in s.best.items())
            lines.append(f"{s.name[:24]:24}  {last}  {best}".rstrip())
        self.query_one("#summary", Static).update(Text("\n".join(lines)))

    def action_close(self) -> None:
        """Back to the run list."""
        self.dismiss(None)
