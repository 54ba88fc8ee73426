"""Pilot tests of a new user's first hour: errors that clear, keys that explain themselves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from engine.config import RunConfig
from tests.pilot_wait import wait_for
from tests.tui.test_tui_setup import error_text, field, start_enabled
from tui.app import FinetuneApp
from tui.screens.setup import SetupScreen
from tui.widgets.dialogs import Confirm


def form_ready(app: FinetuneApp) -> bool:
    """A setup form, valid, with its deferred tabs (LoRA, Training) mounted."""
    screen = app.screen
    return isinstance(screen, SetupScreen) and screen.valid and bool(screen.query("#in-epochs"))


def _tiny_config(tiny_model: Path) -> RunConfig:
    config = RunConfig()
    config.model.model_name = str(tiny_model)
    return config


def _config_with_a_taken_output(tiny_model: Path, tmp_path: Path) -> RunConfig:
    """The tiny config writing into a folder that holds a file of the user's."""
    taken = tmp_path / "mine"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    config = _tiny_config(tiny_model)
    config.output.output_dir = str(taken)
    return config


async def test_output_folder_error_clears_when_the_field_changes(
    runs_root: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """Start refused on a folder of the user's: a new folder makes Start live again."""
    config = _config_with_a_taken_output(tiny_model, tmp_path)
    app = FinetuneApp(runs_root)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_setup(config)
        await wait_for(pilot, lambda: form_ready(app))
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
        await wait_for(pilot, lambda: form_ready(app))
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
        await wait_for(pilot, lambda: form_ready(app))
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


def _notices(app: FinetuneApp) -> str:
    return " | ".join(n.message for n in app._notifications)


async def test_monitor_keys_that_do_nothing_say_why(
    fake_run: Callable[..., Path], runs_root: Path
) -> None:
    """u / s / g on a finished classification run, and v where plot and log both show."""
    from tui.screens.monitor import MonitorScreen

    run = fake_run("finished")
    app = FinetuneApp(runs_root, attach_to=run)
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.state)
        for key, words in (
            ("u", "finished"),
            ("s", "Nothing to stop"),
            ("g", "causal-lm"),
            ("v", "both on screen"),
        ):
            app.clear_notifications()
            await pilot.press(key)
            await pilot.pause()
            assert words in _notices(app), (key, _notices(app))
        assert app.screen.check_action("toggle_view", ()) is None  # greyed at this size
    async with FinetuneApp(runs_root, attach_to=run).run_test(size=(80, 24)) as pilot:
        app = pilot.app
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.state)
        assert app.screen.check_action("toggle_view", ()) is True


async def test_run_list_keys_that_do_nothing_say_why(
    runs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """w outside a sweep, c with nothing marked, g with an empty queue: a line says why."""
    from textual.widgets import DataTable, Static

    from tests.fakeruns import make_fake_run
    from tui.screens.runs import RunsScreen

    make_fake_run(runs_root, "solo", "finished", accuracy=0.8, loss0=0.6)
    app = FinetuneApp(runs_root)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(
            pilot,
            lambda: (
                isinstance(app.screen, RunsScreen)
                and app.screen.query_one(DataTable).row_count == 1
            ),
        )
        notice = app.screen.query_one("#notice", Static)
        for key, words in (
            ("w", "not part of a sweep"),
            ("c", "Mark two runs"),
            ("g", "queue is empty"),
        ):
            await pilot.press(key)
            await pilot.pause()
            assert words in str(notice.render()), (key, str(notice.render()))


async def test_causal_lm_on_the_default_encoder_is_refused_in_the_form(runs_root: Path) -> None:
    """Choosing causal-lm with the default MiniLM says so at the model field before Start."""
    from textual.widgets import Select

    app = FinetuneApp(runs_root)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: form_ready(app))
        app.screen.query_one("#in-task", Select).value = "causal-lm"
        await wait_for(pilot, lambda: error_text(app, "model_name"))
        assert "decoder-only" in error_text(app, "model_name")
        assert not start_enabled(app)


async def test_form_messages_name_fields_and_overwrite_is_a_switch(
    runs_root: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """The refusal names the form's overwrite switch (no CLI flag); turning it on clears it."""
    from textual.widgets import Switch

    config = _config_with_a_taken_output(tiny_model, tmp_path)
    app = FinetuneApp(runs_root)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_setup(config)
        await wait_for(pilot, lambda: form_ready(app))
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: error_text(app, "output_dir"))
        shown = error_text(app, "output_dir") + _notices(app)
        assert "--" not in shown, shown
        assert "turn on 'overwrite' (Training tab)" in error_text(app, "output_dir")
        switch = field(app, "overwrite").editor
        assert isinstance(switch, Switch)
        switch.value = True
        await wait_for(pilot, lambda: app.screen.valid, timeout=10)
        assert app.screen.form_config().output.overwrite


async def test_a_column_of_the_old_file_goes_back_to_auto(
    runs_root: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """label column 'rating' chosen for one file is reset to auto for a file without it."""
    from textual.widgets import Select, Static

    first = tmp_path / "a.csv"
    first.write_text("text,rating\n" + "".join(f"row {i} ok,{i % 2}\n" for i in range(30)))
    second = tmp_path / "b.csv"
    second.write_text("text,label\n" + "".join(f"row {i} ok,{i % 2}\n" for i in range(30)))
    config = _tiny_config(tiny_model)
    config.data.data_file_path = str(first)
    config.data.label_column = "rating"
    app = FinetuneApp(runs_root)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_setup(config)
        await wait_for(pilot, lambda: form_ready(app))
        summary = app.screen.query_one("#data-summary", Static)
        await wait_for(pilot, lambda: "label = 'rating'" in str(summary.render()), timeout=20)
        field(app, "data_file_path").editor.value = str(second)
        await wait_for(pilot, lambda: field(app, "label_column").value == "", timeout=20)
        await wait_for(pilot, lambda: app.screen.valid, timeout=20)
        select = field(app, "label_column").editor
        assert isinstance(select, Select) and select.value == ""
        assert "no column 'rating'" in _notices(app)


async def test_log_lines_written_while_the_plot_shows_use_the_full_width(
    fake_run: Callable[..., Path], runs_root: Path
) -> None:
    """At 80x24, v (plot), lines arrive, v (log): they wrap at the log's width, not 20."""
    from tui.screens.monitor import MonitorScreen
    from tui.widgets.event_log import EventLog

    app = FinetuneApp(runs_root, attach_to=fake_run("finished"))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.state)
        log = app.screen.query_one(EventLog)
        await pilot.press("v")
        await pilot.pause(0.3)
        assert not log.display
        text = "a line that arrived while the plot was showing, " * 2
        log.add(text.strip())
        await pilot.press("v")
        await pilot.pause(0.2)
        assert log.display
        tail = [strip.text for strip in log.lines[-2:]]  # ~97 characters: two rows of ~76
        assert "".join(tail).count("arrived") == 2, tail
        assert len(tail[0]) > 60, tail


def _lm_run(runs_root: Path) -> Path:
    """A finished causal-lm run (fixed events) whose samples have long prompts and answers."""
    from engine.rundir.events import Sample, Started
    from tests.conftest import fixed_events, write_run

    events = fixed_events(total_steps=60)
    for e in events:
        if isinstance(e, Started):
            e.config["task"] = "causal-lm"
    at = next(i for i, e in enumerate(events) if e.type == "eval") + 1
    samples = [
        Sample(
            time=events[at].time,
            step=20,
            index=i,
            prompt=f"question {i}: " + "a long context sentence to read. " * 30,
            reference="the reference answer " * 4,
            generated=f"generated answer {i} " * 8,
        )
        for i in range(3)
    ]
    return write_run(runs_root / "20240101-120000-sft", events[:at] + samples + events[at:])


async def test_samples_scroll_and_the_footer_keeps_quit_at_80x24(runs_root: Path) -> None:
    """g at 80x24 with long prompts: PgDn reaches the last answer; ^q Quit stays on screen."""
    from textual.widgets._footer import FooterKey

    from tui.screens.monitor import MonitorScreen

    app = FinetuneApp(runs_root, attach_to=_lm_run(runs_root))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.state)
        screen = app.screen

        def quit_key() -> FooterKey:
            return next(k for k in screen.query(FooterKey) if k.key == "ctrl+q")

        await wait_for(pilot, lambda: quit_key().region.width > 0, "the footer laid out")
        assert quit_key().region.right <= 80, quit_key().region
        await pilot.press("g")
        pane = screen.query_one("#samples-pane")
        await wait_for(pilot, lambda: pane.display and pane.max_scroll_y > 0, "samples shown")
        for _ in range(10):
            await pilot.press("pagedown")
        await pilot.pause(0.2)
        assert pane.scroll_y == pane.max_scroll_y > 0


async def test_nothing_is_cut_silently_at_80_columns(runs_root: Path) -> None:
    """The data-file placeholder fits its box; a focused field whose help is cut or hidden, and
    the task select, get their whole help on the help line."""
    from textual.widgets import Input, Select, Static

    app = FinetuneApp(runs_root)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: form_ready(app))
        screen = app.screen
        screen.query_one("TabbedContent").active = "tab-data"
        await pilot.pause()
        data = field(app, "data_file_path").editor
        assert isinstance(data, Input)
        data.value = ""
        await pilot.pause()
        assert len(data.placeholder) <= data.content_region.width, data.content_region
        help_line = screen.query_one("#help-line", Static)
        data.focus()
        await wait_for(pilot, lambda: "data file:" in str(help_line.render()), "data file help")
        assert help_line.display
        screen.query_one("TabbedContent").active = "tab-model"
        await pilot.pause()
        screen.query_one("#in-task", Select).focus()
        await wait_for(
            pilot,
            lambda: "Text classification: texts with labels" in str(help_line.render()),
            "task help",
        )


def test_long_setting_values_are_cut_with_a_mark() -> None:
    """The sweep / compare table cuts a long value visibly instead of at the screen's edge."""
    from tui.runs_model.comparison import setting_text

    config = RunConfig()
    config.data.label_names = "negative,positive,neutral"
    assert setting_text(config, "label_names") == "negative,posi…"


async def test_plot_axes_show_whole_steps() -> None:
    """The monitor's loss plot and a sweep's curves tick whole steps (no '100.8', '17.2')."""
    from textual.app import App, ComposeResult

    from engine.rundir.events import Eval, Step
    from tui.screens.compare import CurvePlot
    from tui.widgets.loss_plot import LossPlot

    class Plots(App[None]):
        def compose(self) -> ComposeResult:
            yield LossPlot(id="loss")
            yield CurvePlot(id="curves")

    app = Plots()
    async with app.run_test(size=(80, 40)) as pilot:
        steps = [Step(step=i, loss=1.0 / i) for i in range(1, 401)]
        loss = app.query_one(LossPlot)
        loss.show(steps, [Eval(step=200, metrics={"loss": 0.1})])
        curves = app.query_one(CurvePlot)
        curves.show("eval accuracy", [([23, 46, 69], [0.5, 0.7, 0.8], "red", "evals")], 69)
        await pilot.pause(0.2)
        loss_text = str(loss.render())
        curve_text = str(curves.render())
    assert "100.8" not in loss_text and "400.0" not in loss_text
    assert " 200 " in loss_text or "200 " in loss_text
    assert "17.2" not in curve_text and "69.0" not in curve_text
    assert " 20 " in curve_text or "20 " in curve_text


async def test_an_unchanged_form_goes_back_without_asking(
    runs_root: Path, tiny_model: Path
) -> None:
    """Esc on a form nobody touched (its deferred tabs mounted meanwhile) just goes back."""
    app = FinetuneApp(runs_root)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_setup(_tiny_config(tiny_model))
        await wait_for(pilot, lambda: form_ready(app))
        form = app.screen
        await wait_for(pilot, lambda: form.query("#field-learning_rate"))
        await pilot.pause(0.5)
        await pilot.press("escape")
        await wait_for(pilot, lambda: form not in app.screen_stack, timeout=5)


async def test_a_new_form_draws_before_its_later_tabs_are_built(runs_root: Path) -> None:
    """The form mounts with the Model and Data tabs; LoRA and Training follow after the first
    frame (bench/first_frame.py times it), and then hold the values and checks they should."""
    seen: dict[str, bool] = {}

    import tui.screens.setup

    class Watched(SetupScreen):
        CSS_PATH = str(Path(tui.screens.setup.__file__).with_name("setup.tcss"))

        def on_mount(self) -> None:
            seen["training at mount"] = bool(self.query("#in-epochs"))
            seen["model at mount"] = bool(self.query("#in-model_name"))
            super().on_mount()

    config = RunConfig()
    config.training.epochs = 2.5
    app = FinetuneApp(runs_root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.push_screen(Watched(config))
        await wait_for(pilot, lambda: form_ready(app))
        assert seen == {"training at mount": False, "model at mount": True}
        assert field(app, "epochs").value == "2.5"
        assert app.screen.form_config().training.epochs == 2.5


def test_a_sweep_of_losses_lists_the_lowest_first() -> None:
    """'best loss' sorts low to high (the best run on top), 'best acc' high to low."""
    from tui.runs_model.comparison import RunSeries
    from tui.screens.compare import CompareScreen

    screen = CompareScreen([], sweep_id="s")
    screen.series = [
        RunSeries(key="a", name="a", state="finished", config=None, metric_name="loss")
    ]
    assert screen._best_first("best") is False and screen._best_first("speed") is True
    screen.series[0].metric_name = "accuracy"
    assert screen._best_first("best") is True


async def test_focus_on_a_field_that_gets_disabled_moves_on(runs_root: Path) -> None:
    """The held-out share has the cursor when an eval file makes it moot: the cursor moves on
    to a field instead of getting lost (keys would then go nowhere)."""
    app = FinetuneApp(runs_root)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: form_ready(app))
        screen = app.screen
        screen.query_one("TabbedContent").active = "tab-data"
        await pilot.pause()
        share = field(app, "validation_fraction")
        share.editor.focus()
        await pilot.pause()
        assert app.focused is share.editor
        field(app, "eval_file_path").editor.value = "eval.jsonl"
        await wait_for(pilot, lambda: share.disabled, timeout=10)
        await pilot.pause(0.2)
        assert app.focused is not None and app.focused is not share.editor
