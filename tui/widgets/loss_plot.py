"""Train and eval loss by step, as a textual-plotext line plot."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from engine.rundir.events import Eval, Step
from tui.plot_axes import integer_steps

MAX_POINTS = 400


def thin(xs: list[float], ys: list[float], limit: int = MAX_POINTS) -> tuple[list, list]:
    """Every k-th point so that at most `limit` remain (the last point is always kept)."""
    if len(xs) <= limit:
        return xs, ys
    k = -(-len(xs) // limit)
    idx = list(range(0, len(xs), k))
    if idx[-1] != len(xs) - 1:
        idx.append(len(xs) - 1)
    return [xs[i] for i in idx], [ys[i] for i in idx]


class LossPlot(PlotextPlot):
    """Train loss (line) and eval loss (points) against the step."""

    def show(self, steps: list[Step], evals: list[Eval]) -> None:
        """Redraw from all steps and evaluations so far."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.xlabel("step")
        train = [(s.step, s.loss) for s in steps if s.loss is not None]
        if train:
            xs, ys = thin([x for x, _ in train], [y for _, y in train])
            plt.plot(xs, ys, label="train loss", marker="braille")
        evals_xy = [
            (e.step, e.metrics["loss"])
            for e in evals
            if isinstance(e.metrics.get("loss"), (int, float))
        ]
        if evals_xy:
            plt.scatter(
                [x for x, _ in evals_xy], [y for _, y in evals_xy], label="eval loss", marker="●"
            )
        if not train and not evals_xy:
            plt.title("loss appears after the first logged step")
        else:
            xs_all = [x for x, _ in train] + [x for x, _ in evals_xy]
            integer_steps(plt, min(xs_all), max(xs_all))
        self.refresh()
