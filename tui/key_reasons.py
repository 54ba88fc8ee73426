"""Keys that say why they do nothing: a greyed-out or hidden key, pressed, explains itself."""

from __future__ import annotations

from collections.abc import Callable

from textual import events
from textual.binding import Binding
from textual.screen import Screen


def explain_turned_off_key(
    screen: Screen[None],
    event: events.Key,
    why_not: Callable[[str], str],
    explain: Callable[[str, str], None] | None = None,
) -> None:
    """For a key that reached `screen` unused: when `check_action` turns its action off, say why.

    `why_not(action)` gives the reason ('' keeps the key silent); `explain(reason, title)` shows
    it (default: a notification).
    """
    for binding in screen.BINDINGS:
        assert isinstance(binding, Binding)  # the screens that explain keys use Binding objects
        if event.key not in binding.key.split(",") or "." in binding.action:
            continue
        name = binding.action.split("(")[0]
        if screen.check_action(name, ()) is True:
            return
        reason = why_not(name)
        if reason:
            event.stop()
            if explain is not None:
                explain(reason, binding.description)
            else:
                screen.notify(reason, title=binding.description, timeout=5)
        return
