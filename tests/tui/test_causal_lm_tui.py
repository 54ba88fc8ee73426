"""The TUI for causal-lm runs: sample generations in the monitor, the chat screen, the setup form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Input, Select, Static

from engine.config import RunConfig
from engine.rundir.events import Sample
from tests.conftest import fixed_events, write_run
from tests.pilot_wait import wait_for
from tests.tiny_lm import make_tiny_decoder
from tui.app import FinetuneApp, tryit_kind

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def decoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_decoder(tmp_path_factory.mktemp("dec") / "tiny-llama", "llama")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def text_of(screen, selector: str) -> str:
    from textual.css.query import NoMatches

    try:
        return str(screen.query_one(selector, Static).render())
    except NoMatches:  # still composing
        return ""


async def test_monitor_shows_samples_beside_references(runs_root: Path) -> None:
    events = fixed_events(total_steps=60)
    at = next(i for i, e in enumerate(events) if e.type == "eval") + 1
    samples = [
        Sample(time=events[at].time, step=20, index=0, prompt="Capital of France?", reference="Paris", generated="Paris"),
        Sample(time=events[at].time, step=20, index=1, prompt="2+2?", reference="4", generated="five"),
    ]  # fmt: skip
    run = write_run(runs_root / "20240101-120000-sft", events[:at] + samples + events[at:])
    app = FinetuneApp(runs_root, attach_to=run)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.state == "finished")
        assert screen.check_action("toggle_samples", ()) is True
        await pilot.press("g")
        await pilot.pause(0.2)
        shown = screen.query_one("#samples")
        assert shown.display and not screen.query_one("#log").display
        text = str(shown.render())
        assert "samples at step 20" in text
        assert "Capital of France?" in text and "five" in text and "reference 4" in text


def _chat_run(root: Path, decoder: Path) -> Path:
    """A run folder with a causal-lm config and an (untrained) adapter."""
    from engine.tasks.causal_lm.modeling import load_causal_model

    cfg = RunConfig(task="causal-lm")
    cfg.model.model_name = str(decoder)
    run = root / "20240101-120000-chat"
    (run / "adapter").mkdir(parents=True)
    cfg.save(run / "config.toml")
    loaded = load_causal_model(cfg, "fp32")
    loaded.model.save_pretrained(run / "adapter")
    loaded.tokenizer.save_pretrained(run / "adapter")
    return run


async def test_chat_streams_an_answer_and_saves_the_exchange(
    runs_root: Path, decoder: Path
) -> None:
    from tui.screens.chat import EXAMPLES_FILE, ChatScreen

    run = _chat_run(runs_root, decoder)
    assert tryit_kind(run) == "chat"
    app = FinetuneApp(runs_root)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_tryit(run)
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen))
        screen = app.screen
        await wait_for(pilot, lambda: "ready" in text_of(screen, "#status"), timeout=120)
        screen.query_one("#temperature", Input).value = "0"
        screen.query_one("#max_new_tokens", Input).value = "6"
        screen.query_one("#system", Input).value = "Be brief."
        screen.query_one("#message", Input).value = "Is this review positive or negative? fine"
        screen.query_one("#message", Input).focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(screen.turns) == 2, timeout=120)
        assert screen.turns[0] == {
            "role": "user",
            "content": "Is this review positive or negative? fine",
        }
        assert len(screen.query(".turn")) == 2
        await pilot.press("ctrl+s")
        record = json.loads((run / EXAMPLES_FILE).read_text().splitlines()[-1])
        assert [t["role"] for t in record["messages"]] == ["system", "user", "assistant"]
        assert record["messages"][2]["content"] == screen.turns[1]["content"]
        screen.query_one("#temperature", Input).value = "-1"
        screen.query_one("#message", Input).value = "again"
        screen.query_one("#message", Input).focus()
        await pilot.press("enter")
        assert "temperature" in text_of(screen, "#status")
        await pilot.press("ctrl+l")
        assert screen.turns == [] and not screen.query(".turn")


async def test_setup_offers_causal_lm_and_shows_the_trained_part(
    runs_root: Path, decoder: Path, tmp_path: Path
) -> None:
    from tui.screens.setup import SetupScreen

    data = tmp_path / "chats.jsonl"
    row = {
        "messages": [
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris"},
        ]
    }
    data.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    cfg = RunConfig(task="causal-lm")
    cfg.model.model_name = str(decoder)
    cfg.data.data_file_path = str(data)
    app = FinetuneApp(runs_root)
    async with app.run_test(size=(100, 40)) as pilot:
        app.open_setup(cfg)
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))
        screen = app.screen
        await wait_for(pilot, lambda: screen.query("#data-example") and screen.query("#in-task"))
        await pilot.pause(0.2)
        select = screen.query_one("#in-task", Select)
        assert select.value == "causal-lm"
        assert "Instruction tuning" in text_of(screen, "#task-help")
        example = screen.query_one("#data-example", Static)
        await wait_for(
            pilot, lambda: example.display and "Paris" in str(example.render()), timeout=120
        )
        rendered = example.render()
        trained = [
            rendered.plain[s.start : s.end] for s in rendered.spans if "green" in str(s.style)
        ]
        assert trained == ["Paris<|im_end|>\n"]
        assert screen.form_config().task == "causal-lm"


async def test_eval_table_shows_perplexity_for_language_models(runs_root: Path) -> None:
    from engine.rundir.events import Eval
    from tui.widgets.metric_tables import EvalTable

    events = fixed_events(total_steps=60)
    for e in events:
        if isinstance(e, Eval):
            e.metrics = {"accuracy": 0.3, "loss": 2.0, "perplexity": 7.389, "answer_loss": 2.0}
    app = FinetuneApp(runs_root, attach_to=write_run(runs_root / "20240101-120000-lm", events))
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.state == "finished")
        table = screen.query_one(EvalTable)
        assert [str(c.label) for c in table.columns.values()][3] == "ppl"
        assert table.get_row_at(0)[3] == "7.4"


async def test_a_decoder_typed_into_a_fresh_form_switches_the_task_to_causal_lm(
    runs_root: Path, decoder: Path
) -> None:
    from tui.screens.setup import SetupScreen

    app = FinetuneApp(runs_root)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))
        screen = app.screen
        await wait_for(pilot, lambda: screen.query("#in-task"))
        task = screen.query_one("#in-task", Select)
        assert task.value == "classification"
        screen.query_one("#in-model_name", Input).value = str(decoder)
        await wait_for(pilot, lambda: task.value == "causal-lm", timeout=60)
        await pilot.pause(0.2)
        assert "Instruction tuning" in text_of(screen, "#task-help")
        task.value = "preference"  # the user's pick stays for the next model check
        await pilot.pause(0.2)
        screen.query_one("#in-model_name", Input).value = str(decoder) + "/"
        await wait_for(pilot, lambda: "LlamaForCausalLM" in text_of(screen, "#model-info"))
        assert task.value == "preference"


async def test_a_given_configs_classification_task_stays_for_a_decoder(
    runs_root: Path, decoder: Path
) -> None:
    from tui.screens.setup import SetupScreen

    cfg = RunConfig(task="classification")
    cfg.model.model_name = str(decoder)
    app = FinetuneApp(runs_root)
    async with app.run_test(size=(100, 30)) as pilot:
        app.open_setup(cfg)
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))
        screen = app.screen
        await wait_for(pilot, lambda: "LlamaForCausalLM" in text_of(screen, "#model-info"))
        await pilot.pause(0.2)
        assert screen.query_one("#in-task", Select).value == "classification"
