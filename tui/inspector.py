"""The setup form's look at the model and the data: thread workers and how results are shown."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from textual import work
from textual.suggester import SuggestFromList
from textual.timer import Timer
from textual.widgets import Input, Select, Static

from engine.config import RunConfig
from engine.core.errors import UserError
from tui.forms.form_spec import DATA_KEYS, MODEL_KEYS
from tui.messages import DataChecked, ModelChecked
from tui.widgets.data_preview import DataPreview
from tui.widgets.form_field import FormField, field_label

if TYPE_CHECKING:
    from tui.widgets.target_modules import TargetModules

T = TypeVar("T")


def run_lowered(fn: Callable[[], T]) -> T:
    """Run `fn()` in a fresh thread at nice +10 and return its result (or raise its error).

    Linux nice is per thread and an unprivileged thread cannot raise its priority back, so the
    work gets a thread of its own: lowering a Textual worker thread instead would leak into the
    next worker run on it (the engine launch among them).
    """
    import contextlib
    import os
    import threading

    out: list[Any] = []
    err: list[BaseException] = []

    def body() -> None:
        with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed: run as is
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        try:
            out.append(fn())
        except BaseException as exc:  # handed to the caller's thread
            err.append(exc)

    thread = threading.Thread(target=body, name="inspection", daemon=True)
    thread.start()
    thread.join()
    if err:
        raise err[0]
    return out[0]


class InspectionMixin:
    """Inspects the model and reads the data in workers once the user pauses typing.

    Mixed into the setup screen, which provides the fields, the form's config and `revalidate`.
    """

    fields: dict[str, FormField]
    targets: TargetModules
    model_key: tuple[Any, ...]
    data_key: tuple[Any, ...]
    model_modules: list[str]
    _check_timer: Timer | None
    _new_file: bool = False

    def schedule_checks(self, delay: float) -> None:
        """Re-inspect the model and the data once the user pauses typing."""
        if self._check_timer is not None:
            self._check_timer.stop()
        self._check_timer = self.set_timer(max(delay, 0.01), self._run_checks)

    def _run_checks(self) -> None:
        cfg = self.form_config()
        model_key = (
            cfg.model.model_name,
            cfg.model.trust_remote_code,
            cfg.model.allow_pickle_weights,
            cfg.task,
        )
        if model_key != self.model_key and "model_name" not in self._bad_fields():
            self.model_key = model_key
            self.query_one("#model-info", Static).update("checking the model…")
            self.check_model(*model_key)
        data_key = (*(cfg.get(name) for name in DATA_KEYS), cfg.task, cfg.model.model_name)
        if data_key != self.data_key:
            # A new data file: a column chosen for the old one gives way to auto-detect.
            self._new_file = self.data_key[:1] != data_key[:1] and bool(self.data_key)
            self.data_key = data_key
            self.check_data(data_key, cfg)

    def _bad_fields(self) -> set[str]:
        return {name for name, f in self.fields.items() if f.problem}

    # -- model and data inspection (workers) -----------------------------------------------------
    @work(thread=True, exit_on_error=False, group="models")
    def find_models(self) -> None:
        """Suggest models that work offline (the default folder and the local HF cache)."""
        from engine.models.loading import DEFAULT_HUB_ID, known_models

        names = known_models() + [DEFAULT_HUB_ID]
        self.app.call_from_thread(self._set_suggestions, names)

    def _set_suggestions(self, names: list[str]) -> None:
        editor = self.fields["model_name"].editor
        if isinstance(editor, Input):
            editor.suggester = SuggestFromList(names, case_sensitive=False)

    @work(thread=True, exit_on_error=False, exclusive=True, group="model")
    def check_model(self, name: str, trust: bool, allow_pickle: bool, task: str) -> None:
        """Inspect the model (config + meta-device build) off the UI thread."""
        from engine.models.checks import check_model_task
        from engine.tasks.inspect import inspect_model

        key = (name, trust, allow_pickle, task)
        try:
            check_model_task(name, task)  # an encoder for causal-lm: said before Start
            info = run_lowered(
                lambda: inspect_model(name, trust_remote_code=trust, allow_pickle=allow_pickle)
            )
        except UserError as exc:
            self.post_message(ModelChecked(repr(key), error=exc))
        except Exception as exc:  # a broken model config: say so next to the field
            self.post_message(
                ModelChecked(
                    repr(key),
                    error=UserError(
                        f"cannot read this model: {type(exc).__name__}: {exc}",
                        field="model.model_name",
                    ),
                )
            )
        else:
            self.post_message(ModelChecked(repr(key), info=info))

    def on_model_checked(self, message: ModelChecked) -> None:
        """Show the model's summary, or its error next to the field it concerns."""
        if message.name != repr(self.model_key):
            return
        info_line = self.query_one("#model-info", Static)
        for name in MODEL_KEYS:
            self.fields[name].set_external(None)
        if message.error is not None:
            exc = message.error
            name = (exc.field or "model.model_name").split(".")[-1]
            target = self.fields.get(name, self.fields["model_name"])
            target.set_external(exc.message + (f" ({exc.hint})" if exc.hint else ""))
            info_line.update("")
            self.model_modules = []
        else:
            info = message.info
            assert info is not None
            info_line.update(f"{info.summary()}\nLoRA can adapt: {', '.join(info.linear_modules)}")
            self.model_modules = info.linear_modules
            self.targets.set_modules(info.linear_modules, info.auto_targets)
        self.revalidate()

    @work(thread=True, exit_on_error=False, exclusive=True, group="data")
    def check_data(self, key: tuple[Any, ...], cfg: RunConfig) -> None:
        """Read the data file for the preview off the UI thread."""
        from engine.tasks.inspect import inspect_data

        try:
            info = run_lowered(lambda: inspect_data(cfg))
        except UserError as exc:
            self.post_message(DataChecked(key, error=exc))
        except Exception as exc:  # e.g. an unreadable file: a message, never a traceback
            self.post_message(
                DataChecked(
                    key,
                    error=UserError(
                        f"cannot read this file: {type(exc).__name__}: {exc}",
                        field="data.data_file_path",
                    ),
                )
            )
        else:
            self.post_message(DataChecked(key, info=info))

    def on_data_checked(self, message: DataChecked) -> None:
        """Show the data preview and put any data error next to its field."""
        if message.key != self.data_key:
            return
        for name in DATA_KEYS:
            if name in self.fields:
                self.fields[name].set_external(None)
        info = message.info
        error = message.error or (info.error if info else None)
        if error is not None:
            name = (error.field or "data.data_file_path").split(".")[-1]
            target = self.fields.get(name, self.fields["data_file_path"])
            where = f"{Path(error.where).name}: " if error.where and "/" in error.where else ""
            target.set_external(where + error.message + (f" ({error.hint})" if error.hint else ""))
        if info is not None:
            for name in ("text_column", "label_column"):
                field = self.fields[name]
                value = field.value
                if value and info.columns and value not in info.columns and self._new_file:
                    # A column named for another file: back to auto-detect for this one.
                    self.notify(
                        f"{field_label(name)}: this file has no column '{value}', "
                        "back to auto-detect",
                        timeout=6,
                    )
                    value = ""
                    field.set_value("")
                self._set_column_options(field, info.columns, value, getattr(info, name))
            self._new_file = False
        self.query_one(DataPreview).show(info)
        self.revalidate()

    def _set_column_options(
        self, field: FormField, columns: list[str], value: str, detected: str = ""
    ) -> None:
        select = field.editor
        assert isinstance(select, Select)
        names = list(columns) + ([value] if value and value not in columns else [])
        options = [(f"auto ({detected})" if detected else "auto", "")] + [(c, c) for c in names]
        with select.prevent(Select.Changed):
            select.set_options(options)
            select.value = value
