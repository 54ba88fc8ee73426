"""Take a run's result away: copy its adapter and/or write a merged model (a modal dialog)."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.validation import Length
from textual.widgets import Button, Checkbox, Input, Label, ProgressBar, Select, Static

from engine.core.errors import UserError
from tui import keymap
from tui.paths import confirm_overwrite, display_path, free_path, in_use
from tui.run_weights import threads_beside_training

EXPORTS = "finetune-exports"
GGUF_TYPES = [("bf16", "bf16"), ("f16", "f16"), ("q8_0", "q8_0"), ("q4_k_m", "q4_k_m")]


def suggestion(run_id: str, kind: str) -> str:
    """Where an export goes unless the user says otherwise: a new folder under the home folder
    (not wherever the app was started), never one that already holds something."""
    return display_path(free_path(Path.home() / EXPORTS / f"{run_id}-{kind}"))


class ExportScreen(ModalScreen[None]):
    """Copy the run's adapter to a folder, merge it into the base model and save that, or (for
    a language model) write a GGUF for llama.cpp and Ollama, with progress."""

    CSS_PATH = "export.tcss"
    BINDINGS = keymap.keys("export")

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.weights: Path | None = None
        self.results: list[str] = []
        self.gguf_missing = ""

    @staticmethod
    def _destination(run_id: str, kind: str, validators: list[Length]) -> Input:
        """The folder field of one kind of export, with a free suggested folder."""
        return Input(
            suggestion(run_id, kind), id=f"{kind}-out", validators=validators, compact=True
        )

    def compose(self) -> ComposeResult:
        """Where the adapter is, two destinations with their buttons, and the outcome."""
        run_id = self.run_dir.name
        not_empty = [Length(minimum=1, failure_description="give a folder")]
        with Vertical(id="dialog"):
            yield Static(Text(f"Export {run_id}", style="bold"), id="title")
            yield Static("looking for the adapter…", id="where")
            yield Label("Copy the adapter to (load with peft):")
            with Horizontal(classes="row"):
                yield self._destination(run_id, "adapter", not_empty)
                yield Button("Copy", id="copy", compact=True, disabled=True)
            yield Label("Write a merged model to (load with transformers alone):")
            with Horizontal(classes="row"):
                yield self._destination(run_id, "merged", not_empty)
                yield Button("Merge", id="merge", compact=True, disabled=True)
            with Vertical(id="gguf-box"):
                yield Label("Write a GGUF for llama.cpp / Ollama to (model.gguf + Modelfile):")
                with Horizontal(classes="row"):
                    yield self._destination(run_id, "gguf", not_empty)
                    yield Select(
                        GGUF_TYPES, value="bf16", allow_blank=False, id="gguf-type", compact=True
                    )
                    yield Button("GGUF", id="gguf", compact=True, disabled=True)
                yield Checkbox(
                    "adapter alone: adapter.gguf over base.gguf (one base, many adapters)",
                    id="gguf-lora",
                    compact=True,
                )
                yield Static(id="gguf-note")
                yield ProgressBar(total=100, show_eta=False, id="gguf-progress")
            yield Static(id="result")
            with Horizontal(id="buttons"):
                yield Button("Close (esc)", id="close", compact=True)

    def on_mount(self) -> None:
        """Find the adapter in the background."""
        self.find()

    @work(thread=True, group="export-find", exit_on_error=False)
    def find(self) -> None:
        """Locate the run's final adapter (or newest checkpoint) off the UI thread."""
        from engine.rundir.weights import find_weights, task_of

        try:
            weights = find_weights(self.run_dir)
        except UserError as exc:
            self.app.call_from_thread(self._found, None, exc.one_line())
            return
        from engine.config.tasks import GENERATIVE_TASKS

        if task_of(weights) in GENERATIVE_TASKS:
            from engine.tasks.causal_lm.gguf_export import missing_extra

            self.app.call_from_thread(self._gguf_ready, missing_extra())
        self.app.call_from_thread(self._found, weights, "")

    def _gguf_ready(self, missing: str) -> None:
        """Show the GGUF row for a language model (with the pip line when the extra is absent)."""
        self.query_one("#gguf-box").display = True
        self.gguf_missing = missing
        if missing:
            self.query_one("#gguf-note", Static).update(Text(missing, style="bold yellow"))

    def _found(self, weights: Path | None, error: str) -> None:
        self.weights = weights
        where = self.query_one("#where", Static)
        if weights is None:
            where.update(Text(error, style="bold red"))
            return
        kind = (
            "newest checkpoint (the run is not finished)"
            if weights.parent.name == "checkpoints"
            else "adapter"
        )
        where.update(Text.assemble((f"{kind}: ", "dim"), str(weights)))
        for button in self.query(".row Button").results(Button):
            button.disabled = False

    # -- exporting happens in a thread ------------------------------------------------------------
    @on(Button.Pressed, "#copy")
    @on(Input.Submitted, "#adapter-out")
    def copy(self) -> None:
        """Copy the adapter to the chosen folder."""
        self._start("adapter", self.query_one("#adapter-out", Input))

    @on(Button.Pressed, "#merge")
    @on(Input.Submitted, "#merged-out")
    def merge(self) -> None:
        """Write a merged model to the chosen folder."""
        self._start("merged", self.query_one("#merged-out", Input))

    @on(Button.Pressed, "#gguf")
    @on(Input.Submitted, "#gguf-out")
    def gguf(self) -> None:
        """Write a GGUF (merged, or the adapter alone over a base GGUF) to the chosen folder."""
        from engine.tasks.causal_lm.gguf_export import missing_extra

        gguf_type = str(self.query_one("#gguf-type", Select).value)
        missing = missing_extra(gguf_type)
        if missing:
            self.show_result(missing, error=True)
            return
        lora = self.query_one("#gguf-lora", Checkbox).value
        self._start("gguf-lora" if lora else "gguf", self.query_one("#gguf-out", Input), gguf_type)

    def _start(self, kind: str, field: Input, gguf_type: str = "") -> None:
        if self.weights is None:
            return
        check = field.validate(field.value)
        if check is not None and not check.is_valid:
            self.show_result("; ".join(check.failure_descriptions), error=True)
            return
        out = Path(field.value.strip()).expanduser()
        weights = self.weights

        def go(yes: bool | None) -> None:
            if not yes:
                field.value = display_path(free_path(out))
                self.show_result(f"kept {out}; a new folder name is suggested", progress=True)
                return
            notes = {"adapter": "copying…", "merged": "merging… (loads the base model)"}
            self.show_result(
                notes.get(kind, "writing the GGUF… (loads the base model)"), progress=True
            )
            self.query_one("#gguf-progress", ProgressBar).display = kind.startswith("gguf")
            self.query_one("#gguf-progress", ProgressBar).update(progress=0)
            for button in self.query(".row Button").results(Button):
                button.disabled = True
            self.export(kind, weights, out, gguf_type)

        confirm_overwrite(self.app, out, go, folder=True)

    @work(thread=True, group="export", exit_on_error=False)
    def export(self, kind: str, weights: Path, out: Path, gguf_type: str = "") -> None:
        """Run the copy, the merge or the GGUF; post the outcome (or the one-line error)."""
        from engine.tasks.export import copy_adapter, export_merged

        try:
            if kind == "adapter":
                done = copy_adapter(weights, out)
                message = f"adapter copied to {done.resolve()}"
            elif kind == "merged":
                threads = threads_beside_training(self.run_dir)
                done = export_merged(weights, out, threads=threads)
                message = f"merged model written to {done.resolve()}"
            else:
                message = self._gguf(kind, weights, out, gguf_type)
        except UserError as exc:
            self.app.call_from_thread(self.show_result, exc.one_line(), True)
        except Exception as exc:  # noqa: BLE001 - show it, keep the app alive
            self.app.call_from_thread(self.show_result, f"{type(exc).__name__}: {exc}", True)
        else:
            self.app.call_from_thread(self.show_result, message)
        self.app.call_from_thread(self._enable)

    def _gguf(self, kind: str, weights: Path, out: Path, gguf_type: str) -> str:
        """Write the GGUF in this worker thread, moving the progress bar as tensors convert."""
        from engine.tasks.causal_lm.gguf_export import export_gguf, export_gguf_lora

        threads = threads_beside_training(self.run_dir)

        def report(fraction: float, note: str) -> None:
            self.app.call_from_thread(self._progress, fraction, note)

        if kind == "gguf-lora":
            done = export_gguf_lora(weights, out, gguf_type, threads=threads, report=report)
            report(1.0, "done")
            return f"GGUF LoRA written to {done.resolve()} (adapter.gguf, base.gguf, Modelfile)"
        done = export_gguf(weights, out, gguf_type, threads=threads, report=report)
        report(1.0, "done")
        return f"GGUF written to {done.resolve()} (model.gguf, Modelfile: ollama create NAME -f Modelfile)"

    def _progress(self, fraction: float, note: str) -> None:
        self.query_one("#gguf-progress", ProgressBar).update(progress=round(100 * fraction))
        self.show_result(note, progress=True)

    def _enable(self) -> None:
        for button in self.query(".row Button").results(Button):
            button.disabled = self.weights is None
        for field in self.query(".row Input").results(Input):  # the next export: a new name
            out = Path(field.value.strip()).expanduser()
            if out.is_dir() and in_use(out):
                field.value = display_path(free_path(out))

    def show_result(self, message: str, error: bool = False, progress: bool = False) -> None:
        """Show an outcome (kept in `results`) or a progress note under the fields."""
        if not progress:
            self.results.append(message)
        result = self.query_one("#result", Static)
        result.update(Text(message))
        result.set_class(error, "error")

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        """Close the dialog."""
        self.dismiss(None)
