"""Waiting in Pilot tests: let the app run until something shows, with a bounded number of polls."""

from __future__ import annotations

from collections.abc import Callable

from textual.pilot import Pilot


async def wait_for(pilot: Pilot, condition: Callable[[], object], timeout: float = 60.0) -> None:
    """Let the app run until `condition()` holds (fails after `timeout` seconds of pauses)."""
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"condition not met within {timeout}s")
