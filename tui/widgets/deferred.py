"""Parts of a screen mounted after its first frame (tabs nobody looks at yet)."""

from __future__ import annotations

from textual.message import Message
from textual.widget import Widget


class Deferred(Widget):
    """Composes its children into `target`, and mounts that after the first frame.

    Like `textual.lazy.Lazy`, plus a `Deferred.Mounted` message to the screen once the
    children are there (the setup form checks its new fields then).
    """

    DEFAULT_CSS = "Deferred { display: none; }"

    class Mounted(Message):
        """The deferred widgets are now mounted."""

    def __init__(self, target: Widget) -> None:
        self.target = target
        super().__init__()

    def compose_add_child(self, widget: Widget) -> None:
        """Children composed inside go to the target."""
        self.target.compose_add_child(widget)

    async def mount_composed_widgets(self, widgets: list[Widget]) -> None:
        """Mount the target in this placeholder's place after the next refresh."""
        parent = self.parent
        if parent is None:
            return
        assert isinstance(parent, Widget)
        screen = self.screen

        async def mount() -> None:
            await parent.mount(self.target, after=self)
            await self.remove()
            screen.post_message(self.Mounted())

        self.call_after_refresh(mount)
