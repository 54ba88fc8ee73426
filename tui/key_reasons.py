"""Keys that say why they do nothing: a greyed-out or hidden key, pressed, explains itself."""

from __future__ import annotations

from textual import events
from textual.binding import Binding


class ExplainsKeys:
    """Mixed into a Screen: pressing a key whose action `check_action` turns off shows why.

    The screen says why in `why_not(action)`; an empty answer keeps the key silent.
    """

    BINDINGS: list[Binding]

    def why_not(self, action: str) -> str:
        """Why `action` does nothing right now ('' when there is nothing to say)."""
        return ""

    def on_key(self, event: events.Key) -> None:
        """A key that reached the screen unused: explain it when its action is turned off."""
        for binding in self.BINDINGS:
            if event.key not in binding.key.split(",") or "." in binding.action:
                continue
            action = binding.action.split("(")[0]
            if self.check_action(action, ()) is True:  # type: ignore[attr-defined]
                return
            reason = self.why_not(action)
            if reason:
                event.stop()
                self.explain(reason, binding.description)
            return

    def explain(self, reason: str, title: str) -> None:
        """Show why a key did nothing (a notification; a screen may have a line of its own)."""
        self.notify(reason, title=title, timeout=5)  # type: ignore[attr-defined]
