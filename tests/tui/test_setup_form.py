"""The setup form's state without Textual: config, sweeps, checks, edits and the status line."""

from __future__ import annotations

import sys

from engine.config import RunConfig
from tui.forms.form_spec import TAB_OF
from tui.forms.setup_form import FormCheck, SetupForm

NAMES = [name for name in TAB_OF if name != "target_modules"]


def test_the_form_module_imports_no_textual() -> None:
    """The form's logic is usable (and testable) without Textual."""
    import subprocess

    code = (
        "import sys, tui.forms.setup_form; print(any(m.startswith('textual') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_shown_config_reads_back_and_is_not_edited() -> None:
    """A config put in the fields comes back out unchanged, and counts as not edited."""
    config = RunConfig()
    config.training.learning_rate = 3e-4
    config.lora.lora_r = 16
    form = SetupForm.from_config(config, NAMES)
    back, bad = form.read()
    assert bad == {}
    assert back.training.learning_rate == 3e-4
    assert back.lora.lora_r == 16
    assert not form.edited()
    form.values["lora_r"] = "8"
    assert form.edited()
    assert form.config().lora.lora_r == 8


def test_text_that_does_not_convert_is_named_and_keeps_the_default() -> None:
    """A typo is reported for its field; the config keeps that field's default."""
    form = SetupForm.from_config(RunConfig(), NAMES)
    form.values["lora_r"] = "eight"
    cfg, bad = form.read()
    assert set(bad) == {"lora_r"}
    assert cfg.lora.lora_r == RunConfig().lora.lora_r
    check = FormCheck(bad, form.sweep_values())
    assert not check.valid
    assert check.tabs_with_problems() == {"lora"}
    assert check.status().startswith("LoRA › rank r: ")


def test_several_values_make_a_sweep_grid() -> None:
    """Comma-separated numbers are a sweep: the first value is shown, the grid is counted."""
    form = SetupForm.from_config(RunConfig(), NAMES)
    form.values["learning_rate"] = "1e-4, 3e-4, 1e-4"
    form.values["lora_r"] = "4,8"
    assert form.sweep_values() == {"learning_rate": [1e-4, 3e-4], "lora_r": [4, 8]}
    assert form.config().training.learning_rate == 1e-4
    check = FormCheck({}, form.sweep_values())
    assert check.run_count == 4
    assert check.status().startswith("Sweep: 4 runs")
    assert FormCheck({}, {}).status("entry").startswith("Editing a queued run")


def test_targets_the_model_lacks_are_a_problem_once_it_is_inspected() -> None:
    """Named LoRA targets must exist in the model; before inspection nothing is said."""
    form = SetupForm.from_config(RunConfig(), NAMES)
    form.target_modules = "query,nope"
    assert form.target_problem({}) is None
    form.model_modules = ["query", "value"]
    problem = form.target_problem({})
    assert problem is not None and "nope" in problem and "query, value" in problem
    form.target_modules = "auto"
    assert form.target_problem({}) is None


def test_settings_files_read_back_or_say_what_is_wrong(tmp_path) -> None:
    """Load gets the settings or one line; Save refuses a folder that does not exist."""
    from tui.forms.setup_form import read_settings, save_problem

    good = tmp_path / "good.toml"
    RunConfig().save(good)
    assert isinstance(read_settings(str(good)), RunConfig)
    bad = tmp_path / "bad.toml"
    bad.write_text('[training]\nepochs = "many"\n')
    assert read_settings(str(bad)) == (
        "training.epochs: epochs must be a number such as 0.1 or 1e-3 (got 'many')"
    )
    bad.write_text("epochs = = 1")
    assert read_settings(str(bad)).startswith(f"{bad}: not valid TOML")
    assert save_problem(str(tmp_path / "x.toml")) is None
    assert (
        save_problem(str(tmp_path / "nowhere" / "x.toml"))
        == f"no such folder: {tmp_path / 'nowhere'}"
    )


def test_a_refused_launch_becomes_field_problems() -> None:
    """A ConfigError names each field; a single UserError its own field, hint included."""
    from engine.core.errors import ConfigError, UserError
    from tui.forms.setup_form import field_problems

    both = ConfigError({"training.epochs": "must be > 0", "lora.lora_r": "must be > 0"})
    assert field_problems(both) == {"training.epochs": "must be > 0", "lora.lora_r": "must be > 0"}
    one = UserError("no such file", field="data.data_file_path", hint="pick another")
    assert field_problems(one) == {"data.data_file_path": "no such file (pick another)"}


def test_launch_outcomes_carry_errors_not_exceptions(tmp_path) -> None:
    """An OS error while starting or queueing is a RunLaunched with a one-line error."""
    from tui.forms.launching import outcome

    def full_disk():
        raise OSError(28, "No space left on device")

    message = outcome("queue", full_disk)
    assert message.run_dir is None and message.error is not None
    assert message.error.one_line().startswith("cannot queue: ")
