"""Pilot tests of a new user's first hour: errors that clear, keys that explain themselves."""

from __future__ import annotations

from pathlib import Path

from engine.config import RunConfig
from tests.pilot_wait import wait_for
from tests.test_tui_setup import error_text, field, start_enabled
from tui.app import FinetuneApp
from tui.screens.setup import SetupScreen
from tui.widgets.dialogs import Confirm


def _tiny_config(tiny_model: Path) -> RunConfig:
    config = RunConfig()
    config.model.model_name = str(tiny_model)
    return config


async def test_output_folder_error_clears_when_the_field_changes(
    runs_root: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """Start refused on a folder of the user's: a new folder makes Start live again."""
    taken = tmp_path / "mine"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    config = _tiny_config(tiny_model)
    config.output.output_dir = str(taken)
    app = FinetuneApp(runs_root)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_setup(config)
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen) and app.screen.valid)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: error_text(app, "output_dir"))
        assert not app.screen.valid and not start_enabled(app)
        assert "output folder" in error_text(app, "output_dir")
        field(app, "output_dir").editor.value = str(tmp_path / "new-folder")
        await wait_for(pilot, lambda: app.screen.valid, timeout=10)
        assert error_text(app, "output_dir") == ""
        assert start_enabled(app)
        tabs = app.screen.query_one("TabbedContent")
        assert "!" not in str(tabs.get_tab("tab-training").label)


async def test_escape_on_an_edited_form_asks_first(runs_root: Path, tiny_model: Path) -> None:
    """Esc on a changed form asks before dropping it; an unchanged form just goes back."""
    app = FinetuneApp(runs_root)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_setup(_tiny_config(tiny_model))
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen) and app.screen.valid)
        form = app.screen
        field(app, "learning_rate").editor.value = "0.002"
        await pilot.pause()
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("escape")  # "Stay"
        await wait_for(pilot, lambda: app.screen is form)
        assert field(app, "learning_rate").value == "0.002"
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm))
        app.screen.query_one("#yes").press()
        await wait_for(pilot, lambda: form not in app.screen_stack)


async def test_tabs_have_keys_and_the_cursor_follows(runs_root: Path, tiny_model: Path) -> None:
    """ctrl+pagedown / ctrl+pageup (or alt+right / left) open the next / previous tab."""
    app = FinetuneApp(runs_root)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_setup(_tiny_config(tiny_model))
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen) and app.screen.valid)
        tabs = app.screen.query_one("TabbedContent")
        await pilot.press("ctrl+pagedown", "alt+right")
        await pilot.pause()
        assert tabs.active == "tab-lora"
        assert app.focused is field(app, "lora_r").editor
        await pilot.press("ctrl+pagedown")
        await pilot.pause()
        assert tabs.active == "tab-training"
        assert app.focused is field(app, "epochs").editor
        await pilot.press("ctrl+pagedown")
        await pilot.pause()
        assert tabs.active == "tab-model" and app.focused is field(app, "model_name").editor
        await pilot.press("ctrl+pageup")
        await pilot.pause()
        assert tabs.active == "tab-training"
        assert app.screen.active_bindings[
            "ctrl+pagedown"
        ].binding.show  # the footer shows the tab keys
