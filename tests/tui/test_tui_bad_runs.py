"""The app survives malformed run directories: listed as they are (or unreadable, with why)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from tests.fakeruns import malformed_runs
from tests.pilot_wait import wait_for
from tui.app import FinetuneApp
from tui.screens.monitor import MonitorScreen
from tui.screens.runs import RunsScreen


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A runs root with one good run and five broken ones."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root = tmp_path / "runs"
    malformed_runs(root)
    return root


async def test_the_app_lists_and_opens_malformed_runs(root: Path) -> None:
    app = FinetuneApp(runs_root=root)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        table = screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 6)
        states = {rid.split("-")[-1]: str(table.get_cell(rid, "status")) for rid in screen.order}
        assert states["eventsdir"] == "unreadable"
        assert states["good"] == "finished"
        assert states["liststatus"] == "stopped"
        index = next(i for i, rid in enumerate(screen.order) if rid.endswith("-eventsdir"))
        table.move_cursor(row=index)
        await pilot.pause()
        detail = str(screen.query_one("#detail", Static).render())
        assert "unreadable" in detail and "IsADirectoryError" in detail
        # Every broken run opens in the monitor without taking the app down.
        for name in ("eventsdir", "badevent", "pidstatus", "emptycfg"):
            index = next(i for i, rid in enumerate(screen.order) if rid.endswith(f"-{name}"))
            table.move_cursor(row=index)
            await pilot.pause()
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen))
            await pilot.pause(0.3)
            app.pop_screen()
            await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        assert app.is_running
