"""Chat with an instruction-tuned run: answers stream in token by token; save an exchange as data."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.validation import Number
from textual.widgets import Footer, Input, Label, Static

from engine.core.errors import UserError
from tui import keymap
from tui.run_weights import NewestWeights, describe

EXAMPLES_FILE = "chat_examples.jsonl"


def _generator(weights: Path, threads: int) -> Any:
    """The model and tokenizer of the weights, quantised for a fast CPU chat."""
    from engine.tasks.causal_lm.modeling import load_generator

    return load_generator(weights, threads, quantised=True)


class ChatScreen(Screen[None]):
    """A chat with the run's newest weights, with sampling settings and a system prompt."""

    CSS_PATH = "chat.tcss"
    BINDINGS = keymap.keys("chat")

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.turns: list[dict[str, str]] = []
        self.streaming = False
        self.weights: NewestWeights[Any] = NewestWeights(self.run_dir, _generator)
        self._stop = threading.Event()
        self._answer: Static | None = None
        self._answer_text = ""

    def compose(self) -> ComposeResult:
        """Weights line, settings row, transcript, message box."""
        yield Static("looking for the adapter…", id="source")
        with Horizontal(id="settings"):
            yield Label("system", classes="setting-label")
            yield Input(placeholder="optional system prompt", id="system", compact=True)
        with Horizontal(id="sampling"):
            yield Label("temperature", classes="setting-label")
            yield Input("0.7", id="temperature", compact=True, validators=[Number(0, 5)])
            yield Label("top-p", classes="setting-label")
            yield Input("0.9", id="top_p", compact=True, validators=[Number(0.01, 1)])
            yield Label("max new tokens", classes="setting-label")
            yield Input(
                "128",
                id="max_new_tokens",
                compact=True,
                type="integer",
                validators=[Number(1, 4096)],
            )
        yield VerticalScroll(id="transcript")
        yield Input(placeholder="Message (enter sends)", id="message")
        yield Static("", id="status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        """Load the model in the background so the first answer starts quickly."""
        self.sub_title = f"chat with {self.run_dir.name}"
        self.query_one("#message", Input).focus()
        self.load_model()

    # -- helpers ---------------------------------------------------------------------------------
    def set_status(self, message: str, kind: str = "") -> None:
        """One status line (`error`, `busy` or plain)."""
        status = self.query_one("#status", Static)
        status.update(Text(message))
        for name in ("error", "busy"):
            status.set_class(kind == name, name)

    def sampling(self) -> Any:
        """The sampling settings of the form (a UserError names a bad one)."""
        from engine.tasks.causal_lm.generation import Sampling

        values = {}
        for name in ("temperature", "top_p", "max_new_tokens"):
            box = self.query_one(f"#{name}", Input)
            result = box.validate(box.value)
            if result is not None and not result.is_valid:
                raise UserError(f"{name.replace('_', ' ')}: {result.failure_descriptions[0]}")
            values[name] = float(box.value)
        return Sampling(int(values["max_new_tokens"]), values["temperature"], values["top_p"])

    def _add(self, role: str, text: str) -> Static:
        bubble = Static(Text(text), classes=f"turn {role}")
        bubble.border_title = role
        self.query_one("#transcript", VerticalScroll).mount(bubble)
        return bubble

    # -- actions -----------------------------------------------------------------------------------
    @on(Input.Submitted, "#message")
    def send(self) -> None:
        """Send the message and stream the answer."""
        box = self.query_one("#message", Input)
        text = box.value.strip()
        if not text or self.streaming:
            return
        try:
            sampling = self.sampling()
        except UserError as exc:
            self.set_status(exc.one_line(), "error")
            return
        box.value = ""
        self.turns.append({"role": "user", "content": text})
        self._add("user", text)
        self._answer = self._add("assistant", "…")
        self._answer_text = ""
        self.streaming = True
        self._stop.clear()
        self.set_status("generating… (ctrl+x stops)", "busy")
        system = self.query_one("#system", Input).value.strip()
        self.generate(list(self.turns), system, sampling)

    def action_stop(self) -> None:
        """Stop the answer being generated (what came so far is kept)."""
        self._stop.set()

    def action_clear(self) -> None:
        """Start a new chat."""
        if self.streaming:
            self._stop.set()
        self.turns = []
        self.query_one("#transcript").remove_children()
        self.set_status("")

    def action_save(self) -> None:
        """Append this exchange as one `messages` record to chat_examples.jsonl in the run."""
        if not any(t["role"] == "assistant" for t in self.turns):
            self.set_status("nothing to save yet: chat first", "error")
            return
        system = self.query_one("#system", Input).value.strip()
        messages = ([{"role": "system", "content": system}] if system else []) + self.turns
        path = self.run_dir / EXAMPLES_FILE
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
        self.notify(f"saved as a training example in {path}")
        self.set_status(f"saved to {path}")

    def action_back(self) -> None:
        """Back to the previous screen."""
        self._stop.set()
        self.app.pop_screen()

    # -- the model lives in worker threads ----------------------------------------------------------
    @work(thread=True, group="chat-load", exit_on_error=False)
    def load_model(self) -> None:
        """Load the newest weights in a thread."""
        call = self.app.call_from_thread
        try:
            with self.weights.lock:
                _, weights, threads = self.weights.get()
        except UserError as exc:
            call(self.set_status, exc.one_line(), "error")
            return
        except Exception as exc:  # noqa: BLE001 - a broken folder must not kill the app
            call(self.set_status, f"cannot load the model: {type(exc).__name__}: {exc}", "error")
            return
        call(self._show_source, describe(weights, self.run_dir), threads)
        call(self.set_status, "ready: type a message and press enter")

    @work(thread=True, group="chat", exit_on_error=False)
    def generate(self, turns: list[dict[str, str]], system: str, sampling: Any) -> None:
        """Stream one answer, posting pieces to the UI thread as they come."""
        from engine.tasks.causal_lm.formats import Chat
        from engine.tasks.causal_lm.generation import stream

        call = self.app.call_from_thread
        chat = Chat(([{"role": "system", "content": system}] if system else []) + turns)
        try:
            with self.weights.lock:
                (model, tokenizer), weights, threads = self.weights.get()
                call(self._show_source, describe(weights, self.run_dir), threads)
                for piece in stream(model, tokenizer, chat, sampling):
                    call(self._append, piece)
                    if self._stop.is_set():
                        break
        except UserError as exc:
            call(self._done, exc.one_line())
            return
        except Exception as exc:  # noqa: BLE001
            call(self._done, f"generation failed: {type(exc).__name__}: {exc}")
            return
        call(self._done, "")

    def _append(self, piece: str) -> None:
        self._answer_text += piece
        if self._answer is not None:
            self._answer.update(Text(self._answer_text))
            self.query_one("#transcript", VerticalScroll).scroll_end(animate=False)

    def _done(self, error: str) -> None:
        self.streaming = False
        self.turns.append({"role": "assistant", "content": self._answer_text})
        if self._answer is not None and not self._answer_text:
            self._answer.update(Text("(no answer)", style="dim"))
        if error:
            self.set_status(error, "error")
        else:
            self.set_status("ctrl+s saves this chat as a training example")

    def _show_source(self, source: str, threads: int) -> None:
        line = Text.assemble(("weights: ", "dim"), source or "none yet")
        if threads == 1:
            line.append("  (training: 1 thread)", style="yellow")
        self.query_one("#source", Static).update(line)
