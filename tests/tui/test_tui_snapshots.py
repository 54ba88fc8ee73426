"""Snapshots of the setup and monitor screens at 80x24 and 120x40 (fixed inputs, no clock)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from textual.events import Mount
from textual.pilot import Pilot
from textual.widgets import Input, Static

import tui.app
from engine.config import RunConfig
from tui.app import FinetuneApp
from tui.screens.monitor import MonitorScreen
from tui.screens.setup import SetupScreen

SMALL, BIG = (80, 24), (120, 40)


class SetupApp(FinetuneApp):
    """The app opened straight on a setup form filled from `config`."""

    CSS_PATH = str(Path(tui.app.__file__).with_name("app.tcss"))

    def __init__(self, runs_root: Path, config: RunConfig) -> None:
        super().__init__(runs_root)
        self.config = config

    def on_mount(self, event: Mount) -> None:
        """Open the form with the given settings (instead of what the app opens by default)."""
        event.prevent_default()
        self.open_setup(self.config)


@pytest.fixture
def setup_app(runs_root: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> SetupApp:
    """A setup form on the tiny model (a relative path, so the drawn text is always the same)."""
    monkeypatch.chdir(tiny_model.parent)
    monkeypatch.setattr("engine.core.hardware.describe_auto_precision", lambda: "bf16 (native AMX)")
    monkeypatch.setattr("engine.core.hardware.available_cores", lambda: 4)
    monkeypatch.setattr("engine.core.hardware.free_memory_bytes", lambda: 22 * 1024**3)
    config = RunConfig()
    config.model.model_name = tiny_model.name
    return SetupApp(runs_root, config)


async def settled(pilot: Pilot) -> None:
    """Wait until the form has inspected the model and the data."""
    screen = pilot.app.screen
    assert isinstance(screen, SetupScreen)
    for _ in range(1200):
        summary = str(screen.query_one("#data-summary", Static).render())
        if screen.model_modules and "rows" in summary and screen.query("#in-epochs"):
            break  # inspected, and the deferred tabs (LoRA, Training) are mounted
        await pilot.pause(0.05)
    await pilot.pause(0.2)


def on_tab(tab: str, then: Callable[[Pilot], object] | None = None) -> Callable:
    """A run_before hook: wait for the form, show a tab, then do `then`."""

    async def run_before(pilot: Pilot) -> None:
        await settled(pilot)
        for editor in pilot.app.screen.query(Input):
            editor.cursor_blink = False  # a blinking cursor would make the picture random
        pilot.app.screen.query_one("TabbedContent").active = f"tab-{tab}"
        await pilot.pause()
        if then is not None:
            result = then(pilot)
            if result is not None:
                await result
        await pilot.pause(0.2)

    return run_before


async def bad_learning_rate(pilot: Pilot) -> None:
    """Type 'abc' as the learning rate, then leave the field."""
    editor = pilot.app.screen.query_one("#in-learning_rate", Input)
    editor.focus()
    editor.value = ""
    await pilot.press("a", "b", "c")
    pilot.app.screen.query_one("ContentTabs").focus()


def test_setup_model_small(snap_compare: Callable, setup_app: SetupApp) -> None:
    assert snap_compare(setup_app, terminal_size=SMALL, run_before=on_tab("model"))


def test_setup_data_small(snap_compare: Callable, setup_app: SetupApp) -> None:
    assert snap_compare(setup_app, terminal_size=SMALL, run_before=on_tab("data"))


def test_setup_invalid_training_small(snap_compare: Callable, setup_app: SetupApp) -> None:
    assert snap_compare(
        setup_app, terminal_size=SMALL, run_before=on_tab("training", bad_learning_rate)
    )


def test_setup_data_big(snap_compare: Callable, setup_app: SetupApp) -> None:
    assert snap_compare(setup_app, terminal_size=BIG, run_before=on_tab("data"))


def test_setup_training_big(snap_compare: Callable, setup_app: SetupApp) -> None:
    assert snap_compare(setup_app, terminal_size=BIG, run_before=on_tab("training"))


def monitor_ready(*keys: str) -> Callable:
    """A run_before hook: wait until the monitor has drawn the run's history, press keys."""

    async def run_before(pilot: Pilot) -> None:
        screen = pilot.app.screen
        assert isinstance(screen, MonitorScreen)
        for _ in range(600):
            if screen.state:
                break
            await pilot.pause(0.05)
        await pilot.pause(0.2)
        await pilot.press(*keys)
        await pilot.pause(0.2)

    return run_before


@pytest.mark.parametrize(
    ("outcome", "size", "keys"),
    [
        ("finished", SMALL, ()),
        ("finished", BIG, ()),
        ("failed", SMALL, ()),
        ("crashed", SMALL, ("v",)),
        ("crashed", BIG, ()),
    ],
    ids=["finished-small", "finished-big", "failed-small", "crashed-plot-small", "crashed-big"],
)
def test_monitor(
    snap_compare: Callable,
    fake_run: Callable[..., Path],
    runs_root: Path,
    outcome: str,
    size: tuple[int, int],
    keys: tuple[str, ...],
) -> None:
    app = FinetuneApp(runs_root, attach_to=fake_run(outcome))
    assert snap_compare(app, terminal_size=size, run_before=monitor_ready(*keys))


# -- the tweak loop: the queue in the run list, a sweep's table, compare ---------------------------
WIDE = (160, 50)


@pytest.fixture
def sweep_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A runs root: a finished 3-value learning-rate sweep (fixed events), an older run, and two
    queued runs of a second sweep."""
    from engine.runs import queue
    from tests.fakeruns import make_fake_run

    root = tmp_path / "runs"
    monkeypatch.setenv("FINETUNE_TUI_RUNS", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    make_fake_run(root, "default-example", "stopped", accuracy=0.74, loss0=0.8)
    for lr, acc, loss0 in ((3e-4, 0.79, 0.7), (1e-3, 0.83, 0.6), (2e-3, 0.81, 0.9)):
        run = make_fake_run(root, f"lr{lr:.0e}", "finished", accuracy=acc, loss0=loss0, steps=12)
        cfg = RunConfig.load(run / "config.toml")
        cfg.training.learning_rate = lr
        cfg.training.epochs = 1
        cfg.output.sweep_id = "sweep-demo"
        cfg.save(run / "config.toml")
    for r in (4, 16):
        cfg = RunConfig()
        cfg.lora.lora_r = r
        cfg.output.run_name = f"r{r}"
        queue.add(root, cfg, sweep_id="sweep-next")
    return root


async def runs_ready(pilot: Pilot) -> None:
    """Wait for the run list's first scan."""
    from textual.widgets import DataTable

    from tui.screens.runs import RunsScreen

    for _ in range(600):
        screen = pilot.app.screen
        if isinstance(screen, RunsScreen) and screen.query_one(DataTable).row_count == 6:
            break
        await pilot.pause(0.05)
    await pilot.pause(0.2)


def open_sweep_table(pilot_keys: tuple[str, ...] = ()) -> Callable:
    """A run_before hook: select a run of the finished sweep, press w (and more keys)."""

    async def run_before(pilot: Pilot) -> None:
        from textual.widgets import DataTable

        from tui.screens.compare import CompareScreen

        await runs_ready(pilot)
        await pilot.press("down", "down", "w", *pilot_keys)
        for _ in range(600):
            screen = pilot.app.screen
            table = screen.query(DataTable) if isinstance(screen, CompareScreen) else None
            if table and table.first().row_count >= 2:
                break
            await pilot.pause(0.05)
        await pilot.pause(0.3)

    return run_before


async def compare_two(pilot: Pilot) -> None:
    """Mark the oldest run and one of the sweep, then compare."""
    from textual.widgets import DataTable

    from tui.screens.compare import CompareScreen

    await runs_ready(pilot)
    await pilot.press("down", "down", "space", "down", "down", "down", "space", "c")
    for _ in range(600):
        screen = pilot.app.screen
        table = screen.query(DataTable) if isinstance(screen, CompareScreen) else None
        if table and table.first().row_count == 2:
            break
        await pilot.pause(0.05)
    await pilot.pause(0.3)


@pytest.mark.parametrize("size", [SMALL, WIDE], ids=["small", "wide"])
def test_runs_with_queue(snap_compare: Callable, sweep_root: Path, size: tuple[int, int]) -> None:
    assert snap_compare(FinetuneApp(sweep_root), terminal_size=size, run_before=runs_ready)


@pytest.mark.parametrize("size", [SMALL, WIDE], ids=["small", "wide"])
def test_sweep_table(snap_compare: Callable, sweep_root: Path, size: tuple[int, int]) -> None:
    assert snap_compare(FinetuneApp(sweep_root), terminal_size=size, run_before=open_sweep_table())


@pytest.mark.parametrize("size", [SMALL, WIDE], ids=["small", "wide"])
def test_compare(snap_compare: Callable, sweep_root: Path, size: tuple[int, int]) -> None:
    assert snap_compare(FinetuneApp(sweep_root), terminal_size=size, run_before=compare_two)


# -- keys and messages a new user meets first: those screens at 80x24 and 160x50 ----------------
@pytest.mark.parametrize("size", [SMALL, WIDE], ids=["small", "wide"])
def test_monitor_log_after_v_twice(
    snap_compare: Callable, fake_run: Callable[..., Path], runs_root: Path, size: tuple[int, int]
) -> None:
    """v (plot), v (log): the log at its full width (at 160x50 v is greyed: both show)."""
    app = FinetuneApp(runs_root, attach_to=fake_run("finished"))
    assert snap_compare(app, terminal_size=size, run_before=monitor_ready("v", "v"))


@pytest.mark.parametrize("size", [SMALL, WIDE], ids=["small", "wide"])
def test_monitor_samples_panel(snap_compare: Callable, runs_root: Path, size: tuple[int, int]):
    """g on a causal-lm run with long prompts: the panel scrolls; the footer keeps ^q Quit."""
    from tests.tui.test_tui_keys_and_messages import _lm_run

    app = FinetuneApp(runs_root, attach_to=_lm_run(runs_root))
    assert snap_compare(app, terminal_size=size, run_before=monitor_ready("g"))


def error_cleared(pilot: Pilot) -> object:
    """Start refused on a folder of the user's, then a new folder typed: the error is gone."""

    async def steps() -> None:
        screen = pilot.app.screen
        assert isinstance(screen, SetupScreen)
        taken = Path("mine")
        taken.mkdir(exist_ok=True)
        (taken / "notes.txt").write_text("mine")
        screen.fields["output_dir"].set_value("mine")
        await pilot.pause(0.2)
        await pilot.press("ctrl+r")
        for _ in range(600):
            if screen.fields["output_dir"].external:
                break
            await pilot.pause(0.05)
        editor = screen.query_one("#in-output_dir", Input)
        editor.focus()
        editor.value = "new-out"
        for _ in range(200):
            if screen.valid:
                break
            await pilot.pause(0.05)
        pilot.app.clear_notifications()
        screen.query_one("ContentTabs").focus()

    return steps()


@pytest.mark.parametrize("size", [SMALL, WIDE], ids=["small", "wide"])
def test_setup_error_cleared(snap_compare: Callable, setup_app: SetupApp, size: tuple[int, int]):
    assert snap_compare(setup_app, terminal_size=size, run_before=on_tab("training", error_cleared))
