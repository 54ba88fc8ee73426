"""How runs are written on screen: names, durations, start times and state colours."""

from __future__ import annotations

import re
import time

from rich.text import Text

STAMP = re.compile(r"^\d{8}-\d{6}-")
STATE_STYLES = {
    "queued": "magenta",
    "starting": "cyan",
    "running": "bold cyan",
    "finished": "green",
    "stopped": "yellow",
    "failed": "bold red",
    "crashed": "red",
    "unreadable": "bold magenta",
}


def short(label: str, width: int = 12) -> str:
    """A label cut to `width` characters (with an ellipsis when cut)."""
    return label if len(label) <= width else label[: width - 1] + "…"


def run_name(run_id: str) -> str:
    """The run id without its leading `YYYYMMDD-HHMMSS-` stamp (the start column shows it)."""
    return STAMP.sub("", run_id) or run_id


def clock(seconds: float | None) -> str:
    """`m:ss` or `h:mm:ss`; `-` when unknown."""
    if seconds is None or seconds <= 0:
        return "-"
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def started(ts: float, wide: bool = False, now: float | None = None) -> str:
    """A start time: `HH:MM` today, else `DD Mon` (with the time too when `wide`)."""
    if not ts:
        return "-"
    now = time.time() if now is None else now
    local = time.localtime(ts)
    same_day = time.strftime("%Y%m%d", local) == time.strftime("%Y%m%d", time.localtime(now))
    if wide:
        return time.strftime("%d %b %H:%M", local)
    return time.strftime("%H:%M" if same_day else "%d %b", local)


def state_text(state: str, step: int = 0, total: int = 0) -> Text:
    """The state, coloured; a live run shows its progress in percent."""
    label = state
    if state == "running" and total:
        label = f"running {min(100, int(100 * step / total))}%"
    return Text(label, style=STATE_STYLES.get(state, ""))


def metric_tag(name: str) -> str:
    """A short name for a metric: 'acc', 'f1', 'loss', 'ppl' (else its first 4 letters)."""
    name = name.removeprefix("eval_")
    return {"accuracy": "acc", "perplexity": "ppl"}.get(name, name[:4])


def best_text(name: str, value: float | None) -> str:
    """The best metric with its name, e.g. 'acc .858' or 'loss 6.83' (at most 9 characters)."""
    if value is None:
        return "-"
    if 0 <= value < 1:
        number = f"{value:.3f}".removeprefix("0")
    elif abs(value) < 100:
        number = f"{value:.2f}"
    else:
        number = f"{value:.0f}"
    return f"{metric_tag(name)} {number}"


def metric(value: float | None) -> str:
    """A metric with three decimals, `-` when missing."""
    return "-" if value is None else f"{value:.3f}"
