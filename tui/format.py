"""How the TUI writes things: clocks, numbers, clipped text, run names, start times, states.

Every screen and widget formats through here, so one value reads the same everywhere.
"""

from __future__ import annotations

import re
import time

from rich.text import Text

UNKNOWN = "-"
"""The mark for a value not known (yet): a clock, a metric, a setting."""
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


def clip(text: str, width: int = 12, from_end: bool = False) -> str:
    """`text` cut to `width` characters with an ellipsis where it was cut (its end kept with
    `from_end`: the question at the end of a long prompt matters most)."""
    if len(text) <= width:
        return text
    return "…" + text[-(width - 1) :] if from_end else text[: width - 1] + "…"


def run_name(run_id: str) -> str:
    """The run id without its leading `YYYYMMDD-HHMMSS-` stamp (the start column shows it)."""
    return STAMP.sub("", run_id) or run_id


def clock(seconds: float | None) -> str:
    """`m:ss` or `h:mm:ss`; UNKNOWN when not known (None or negative)."""
    if seconds is None or seconds < 0:
        return UNKNOWN
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def number(value: float | None, fmt: str = ".3f") -> str:
    """A number in `fmt` (three decimals by default); UNKNOWN when missing."""
    return UNKNOWN if value is None else format(value, fmt)


def as_number(value: object) -> float | None:
    """`value` as a float when it is a number (an int or a float), else None."""
    return float(value) if isinstance(value, (int, float)) else None


def started(ts: float, wide: bool = False, now: float | None = None) -> str:
    """A start time: `HH:MM` today, else `DD Mon` (with the time too when `wide`)."""
    if not ts:
        return UNKNOWN
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
        return UNKNOWN
    if 0 <= value < 1:
        number = f"{value:.3f}".removeprefix("0")
    elif abs(value) < 100:
        number = f"{value:.2f}"
    else:
        number = f"{value:.0f}"
    return f"{metric_tag(name)} {number}"
