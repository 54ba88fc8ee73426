"""Waiting in Pilot tests: let the app run until something shows, with a bounded number of polls."""

from __future__ import annotations

from collections.abc import Callable

from textual.pilot import Pilot


async def wait_for(
    pilot: Pilot, condition: Callable[[], object], what: str = "", timeout: float = 60.0
) -> None:
    """Let the app run until `condition()` holds (fails after `timeout` seconds of pauses); a
    widget the condition queries that is not composed yet counts as not yet."""
    from textual.css.query import NoMatches

    for _ in range(int(timeout / 0.05)):
        try:
            if condition():
                return
        except NoMatches:
            pass
        await pilot.pause(0.05)
    raise AssertionError(f"{what or 'condition'} not met within {timeout}s")
