"""The monitor and the setup form on several processes / machines (torchrun runs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from textual.widgets import Static

from engine.rundir.events import Started, Step
from tests.conftest import fixed_events, write_run
from tests.pilot_wait import wait_for
from tui.app import FinetuneApp
from tui.watcher import RunProgress
from tui.widgets.run_header import scale_text


def _scaled(nnodes: int, nproc: int) -> list:
    """The fixed event stream of a run on nnodes x nproc processes (global samples/s)."""
    world = nnodes * nproc
    events = []
    for e in fixed_events():
        if isinstance(e, Started):
            e = dataclasses.replace(e, world_size=world, nnodes=nnodes, nproc_per_node=nproc)
        elif isinstance(e, Step):
            e = dataclasses.replace(e, world_size=world, nnodes=nnodes)
        events.append(e)
    return events


def test_scale_text_per_machine() -> None:
    """One machine: the process count; several: machines x processes and samples/s per machine."""
    p = RunProgress()
    p.apply(_scaled(1, 2))
    assert scale_text(p) == "2 processes"
    p = RunProgress()
    p.apply(_scaled(4, 2))
    per_machine = p.last_step.samples_per_s / 4
    assert scale_text(p) == f"4 machines x 2 processes, {per_machine:.1f} samples/s per machine"


async def test_monitor_header_shows_machines(tmp_path: Path, runs_root: Path) -> None:
    """The header's time line carries the scale; a one-process run shows none (unchanged)."""
    run = write_run(runs_root / "20240101-120000-demo", _scaled(2, 2))
    app = FinetuneApp(runs_root, attach_to=run)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.state == "finished")
        times = str(screen.query_one("#run-times", Static).render())
        assert "2 machines x 2 processes" in times and "samples/s per machine" in times


async def test_nproc_is_a_training_field(runs_root: Path) -> None:
    """nproc sits under Training (More settings) and refuses a bad count inline."""
    from tests.tui.test_tui_setup import error_text, field
    from tui.forms.form_spec import TAB_OF

    assert TAB_OF["nproc"] == "training"
    app = FinetuneApp(runs_root)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.screen.valid)
        field(app, "nproc").editor.value = "many"
        await wait_for(pilot, lambda: not app.screen.valid)
        assert "nproc must be 'auto' or a count" in error_text(app, "nproc")
        field(app, "nproc").editor.value = "2"
        await wait_for(pilot, lambda: app.screen.valid)
        assert app.screen.form_config().distributed.nproc == "2"
