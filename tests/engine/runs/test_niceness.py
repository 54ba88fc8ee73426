"""The engine runs at the priority the app was started with, whatever its inspection threads do."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path

import pytest

from engine.rundir.runs import read_status
from tests.pilot_wait import wait_for
from tui.app import FinetuneApp
from tui.inspector import run_lowered
from tui.screens.setup import SetupScreen

pytestmark = pytest.mark.skipif(not hasattr(os, "getpriority"), reason="needs os.getpriority")


def _thread_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_lowered_work_leaves_the_calling_thread_alone() -> None:
    before = _thread_nice()
    seen = run_lowered(_thread_nice)
    assert seen == min(before + 10, 19)
    assert _thread_nice() == before


def test_lowered_work_passes_errors_on() -> None:
    def boom() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        run_lowered(boom)


async def test_an_engine_started_from_the_tui_keeps_the_apps_priority(
    runs_root: Path, tiny_model: Path
) -> None:
    from engine.config import RunConfig

    app_nice = os.getpriority(os.PRIO_PROCESS, os.getpid())
    cfg = RunConfig()
    cfg.model.model_name = str(tiny_model)
    cfg.training.epochs = 50.0  # long enough to still be running when we look
    app = FinetuneApp(runs_root)
    pid = 0
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            app.open_setup(cfg)
            screen = None

            def inspected() -> bool:
                nonlocal screen
                screen = app.screen if isinstance(app.screen, SetupScreen) else None
                return bool(screen and screen.valid and screen.model_modules)

            await wait_for(pilot, inspected)  # model and data inspection ran in workers
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: any(runs_root.glob("*/status.json")))
            run_dir = next(runs_root.glob("*/status.json")).parent
            await wait_for(pilot, lambda: read_status(run_dir).get("pid"))
            pid = int(read_status(run_dir)["pid"])
            assert os.getpriority(os.PRIO_PROCESS, pid) == app_nice
    finally:
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
