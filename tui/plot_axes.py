"""Plot axes people read at a glance: whole-number steps on round values."""

from __future__ import annotations

import math


def step_ticks(low: float, high: float, count: int = 5) -> list[int]:
    """About `count` whole-number ticks on round values (1, 2 or 5 x 10^k apart) in [low, high]."""
    low_i, high_i = math.floor(low), math.ceil(high)
    if high_i <= low_i:
        return [low_i]
    raw = (high_i - low_i) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    gap = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    gap = max(1, int(gap))
    first = math.ceil(low_i / gap) * gap
    return list(range(first, high_i + 1, gap))


def integer_steps(plt: object, low: float, high: float) -> None:
    """Put whole-number step ticks on a plotext figure's x axis (not '100.8 200.5')."""
    ticks = step_ticks(low, high)
    plt.xticks(ticks, [str(t) for t in ticks])  # type: ignore[attr-defined]
