"""The setup form's Save and Load: the form's settings to and from a TOML file."""

from __future__ import annotations

from pathlib import Path

from engine.config import RunConfig
from engine.core.errors import ConfigError, UserError
from tui.paths import display_path
from tui.screens.setup_form import FormMixin


class SettingsFilesMixin(FormMixin):
    """Ctrl+S / Ctrl+O on the setup form: the settings as a TOML config that `train --config` runs."""

    def action_save(self) -> None:
        """Save the form as a TOML config."""
        from tui.paths import confirm_overwrite, free_path
        from tui.widgets.dialogs import PathPrompt

        def save(path: str | None) -> None:
            if not path:
                return
            target = Path(path).expanduser()

            def write(yes: bool | None = True) -> None:
                if yes:
                    self.form_config().save(target)
                    self.notify(f"config saved to {target}")

            confirm_overwrite(self.app, target, write)

        def check(path: str) -> str | None:
            parent = Path(path).expanduser().parent
            return None if parent.is_dir() else f"no such folder: {parent}"

        name = self.form_config().output.run_name or "finetune"
        suggestion = free_path(Path.home() / f"{name}.toml")
        self.app.push_screen(
            PathPrompt("Save the settings as TOML", display_path(suggestion), check), save
        )

    def action_load(self) -> None:
        """Fill the form from a TOML config."""
        from tui.widgets.dialogs import PathPrompt

        loaded: list[RunConfig] = []

        def check(path: str) -> str | None:
            try:
                loaded.append(RunConfig.load(Path(path).expanduser()))
            except ConfigError as exc:
                return "; ".join(f"{k}: {v}" for k, v in exc.problems.items())
            except UserError as exc:
                return exc.one_line()
            return None

        def apply(path: str | None) -> None:
            if path and loaded:
                self.load_config(loaded[-1])
                self.notify(f"settings loaded from {path}")

        self.app.push_screen(
            PathPrompt("Load settings from a TOML file", "finetune.toml", check), apply
        )
