"""The run table's columns: how wide each is and what a run shows in it (no widgets here)."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from engine.config import RunConfig
from engine.models.loading import model_label
from engine.runs.queue import short_value
from tui.format import (
    STATE_STYLES,
    UNKNOWN,
    best_text,
    clip,
    clock,
    run_name,
    started,
    state_text,
)
from tui.runs_model.run_rows import RunRow

# Settings first: at 80 columns they tell runs of one model and data apart; model and data
# get their columns when the terminal is wide enough (the detail line always names them).
COLUMNS = ("name", "status", "best", "lr", "ep", "bs", "r", "time", "started", "model", "data")
NARROW = {
    "name": 12,
    "status": 11,
    "best": 9,
    "lr": 7,
    "ep": 3,
    "bs": 4,
    "r": 3,
    "time": 7,
    "started": 6,
}
WIDE_EXTRA = {"model": 11, "data": 8}
GROWTH = {"name": (0.4, 40), "model": (0.35, 32), "data": (0.25, 24)}
MARK = "●"


def column_widths(width: int) -> dict[str, int]:
    """Column widths that fit `width` cells (80 and up), giving extra room to the text columns."""
    widths = dict(NARROW)
    used = sum(widths.values()) + 2 * len(widths) + 1
    if width - used >= sum(WIDE_EXTRA.values()) + 2 * len(WIDE_EXTRA) + 6:
        widths.update(WIDE_EXTRA)
    extra = max(0, width - (sum(widths.values()) + 2 * len(widths) + 1))
    if extra >= 6:
        widths["started"] += 6  # room for the date and the time
        extra -= 6
    for name, (share, cap) in GROWTH.items():
        if name in widths:
            widths[name] = min(cap, widths[name] + int(extra * share))
    return {name: widths[name] for name in COLUMNS if name in widths}


def settings_cells(config: RunConfig | None) -> dict[str, str]:
    """The settings columns of a run: learning rate, epochs, batch size, LoRA rank."""
    if config is None:
        return dict.fromkeys(("lr", "ep", "bs", "r"), UNKNOWN)
    t = config.training
    return {
        "lr": short_value(t.learning_rate),
        # The epochs asked for; a max_steps cap is on the detail line (600 does not fit here).
        "ep": short_value(t.epochs),
        "bs": str(t.batch_size * t.grad_accum) if t.batch_size else "auto",
        "r": str(config.lora.lora_r),
    }


def row_cells(row: RunRow, widths: dict[str, int], marked: list[str]) -> list[Any]:
    """A run's cells for the columns in `widths` (a marked run's name gets a dot and bold)."""
    w, info = widths, row.info
    mark = MARK if row.run_id in marked else " "
    name = row.entry.name if row.entry is not None else run_name(info.run_id)
    status = (
        Text(f"queued #{row.place}", style=STATE_STYLES["queued"])
        if row.queued
        else state_text(info.state, info.step, info.total_steps)
    )
    cells: dict[str, Any] = {
        "name": Text(f"{mark} {clip(name, w['name'] - 2)}", style="bold" if mark != " " else ""),
        "status": status,
        "best": best_text(info.metric_name, info.best_metric),
        **settings_cells(row.config),
        "time": clock(info.duration_s or None),
        "started": started(info.started_at, wide=w["started"] > 8),
        "model": clip(model_label(info.model), w.get("model", 0)),
        "data": clip(info.data or UNKNOWN, w.get("data", 0)),
    }
    return [cells[name] for name in w]
