"""The setup form's look at the model and the data: thread workers that post what they found."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from textual.screen import Screen

from engine.config import RunConfig
from engine.core.errors import UserError
from tui.messages import DataChecked, ModelChecked, ModelsFound

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


class Inspector:
    """Inspects a model and reads a data file in thread workers of its screen, off the UI thread.

    Each result reaches the screen as a message (ModelsFound, ModelChecked, DataChecked); a
    newer check of the same kind replaces one still running.
    """

    def __init__(self, screen: Screen[Any]) -> None:
        self.screen = screen

    def _run(self, fn: Callable[[], None], group: str, exclusive: bool = True) -> None:
        self.screen.run_worker(
            fn, thread=True, exit_on_error=False, exclusive=exclusive, group=group
        )

    def find_models(self) -> None:
        """Look for models that work offline (the default folder and the local HF cache)."""
        self._run(self._find_models, "models", exclusive=False)

    def _find_models(self) -> None:
        from engine.models.loading import DEFAULT_HUB_ID, known_models

        self.screen.post_message(ModelsFound(known_models() + [DEFAULT_HUB_ID]))

    def check_model(self, name: str, trust: bool, allow_pickle: bool, task: str) -> None:
        """Inspect the model (config + meta-device build); ModelChecked says what it found."""
        self._run(partial(self._check_model, name, trust, allow_pickle, task), "model")

    def _check_model(self, name: str, trust: bool, allow_pickle: bool, task: str) -> None:
        from engine.models.checks import check_model_task
        from engine.tasks.inspect import inspect_model

        key = repr((name, trust, allow_pickle, task))
        try:
            check_model_task(name, task)  # an encoder for causal-lm: said before Start
            info = run_lowered(
                lambda: inspect_model(name, trust_remote_code=trust, allow_pickle=allow_pickle)
            )
        except UserError as exc:
            self.screen.post_message(ModelChecked(key, error=exc))
        except Exception as exc:  # a broken model config: say so next to the field
            error = UserError(
                f"cannot read this model: {type(exc).__name__}: {exc}", field="model.model_name"
            )
            self.screen.post_message(ModelChecked(key, error=error))
        else:
            self.screen.post_message(ModelChecked(key, info=info))

    def check_data(self, key: tuple[Any, ...], cfg: RunConfig) -> None:
        """Read the data file for the preview; DataChecked says what it found."""
        self._run(partial(self._check_data, key, cfg), "data")

    def _check_data(self, key: tuple[Any, ...], cfg: RunConfig) -> None:
        from engine.tasks.inspect import inspect_data

        try:
            info = run_lowered(lambda: inspect_data(cfg))
        except UserError as exc:
            self.screen.post_message(DataChecked(key, error=exc))
        except Exception as exc:  # e.g. an unreadable file: a message, never a traceback
            error = UserError(
                f"cannot read this file: {type(exc).__name__}: {exc}", field="data.data_file_path"
            )
            self.screen.post_message(DataChecked(key, error=error))
        else:
            self.screen.post_message(DataChecked(key, info=info))
