"""The keymap: one table whose every key reaches an action of the screen that binds it."""

import pytest
from textual.binding import Binding

from tui import keymap
from tui.app import FinetuneApp
from tui.screens.chat import ChatScreen
from tui.screens.compare import CompareScreen
from tui.screens.export import ExportScreen
from tui.screens.monitor import MonitorScreen
from tui.screens.runs import RunsScreen
from tui.screens.setup import SetupScreen
from tui.screens.tryit import TryItScreen
from tui.widgets.dialogs import Confirm, PathPrompt
from tui.widgets.file_picker import FilePicker

SCREENS = {
    "app": FinetuneApp,
    "setup": SetupScreen,
    "monitor": MonitorScreen,
    "runs": RunsScreen,
    "compare": CompareScreen,
    "chat": ChatScreen,
    "try_it": TryItScreen,
    "export": ExportScreen,
    "file_picker": FilePicker,
    "path_prompt": PathPrompt,
    "confirm": Confirm,
}


def test_every_screen_in_the_table_is_a_screen_that_uses_it() -> None:
    assert {row[0] for row in keymap.KEYS} == set(SCREENS)
    for name, cls in SCREENS.items():
        assert keymap.keys(name) == cls.BINDINGS, name


@pytest.mark.parametrize("name", sorted(SCREENS))
def test_each_key_reaches_an_action_and_is_bound_once(name: str) -> None:
    cls = SCREENS[name]
    seen: set[str] = set()
    for binding in keymap.keys(name):
        assert isinstance(binding, Binding)
        action = binding.action.split("(", 1)[0]
        owner = FinetuneApp if action.startswith("app.") else cls
        method = "action_" + action.removeprefix("app.")
        assert hasattr(owner, method), f"{name}: {binding.key} -> {binding.action} has no {method}"
        for key in binding.key.split(","):
            assert key not in seen, f"{name}: {key} is bound twice"
            seen.add(key)
        assert "ctrl+q" not in seen or name == "app", f"{name} takes ctrl+q (Quit) from the app"


def test_flags_become_binding_options() -> None:
    start = next(b for b in keymap.keys("setup") if b.action == "start")
    assert (start.show, start.priority) == (False, True)
    mark = next(b for b in keymap.keys("runs") if b.action == "mark")
    assert (mark.show, mark.key_display) == (True, "spc")
