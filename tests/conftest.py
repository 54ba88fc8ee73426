"""Shared fixtures: a tiny BERT (no network), an isolated runs root, and fixed event streams."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.rundir.events import (
    Checkpoint,
    Eval,
    Event,
    EventWriter,
    Failed,
    Finished,
    Log,
    Phase,
    Started,
    Step,
)

T0 = 1_700_000_000.0


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT with its tokenizer, built once per session."""
    from tests.tiny import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("tiny") / "tiny-bert")


@pytest.fixture
def runs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty runs root of this test's own, set in $FINETUNE_TUI_RUNS; no hub access."""
    root = tmp_path / "runs"
    monkeypatch.setenv("FINETUNE_TUI_RUNS", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return root


def fixed_events(total_steps: int = 60, epochs: int = 3, outcome: str = "finished") -> list[Event]:
    """A deterministic event stream of a whole run (fixed clock), ending as `outcome`."""
    t = T0
    cfg = RunConfig()
    events: list[Event] = [
        Phase(time=t, name="loading data"),
        Phase(time=t + 0.5, name="loading model"),
        Phase(time=t + 4.0, name="tokenizing"),
        Started(
            time=t + 4.2,
            run_id="20240101-120000-demo",
            model="/models/tiny-bert",
            config=cfg.to_dict(),
            train_size=288,
            eval_size=32,
            labels=["negative", "positive"],
            precision="bf16",
            threads=2,
            total_steps=total_steps,
            trainable_params=1_234,
            total_params=63_426,
            pid=1,
        ),
        Log(time=t + 4.3, message="288 train / 32 eval examples (held out); LoRA on query, value"),
        Phase(time=t + 4.4, name="training"),
    ]
    per_epoch = total_steps // epochs
    stop_at = total_steps if outcome == "finished" else total_steps // 2
    for step in range(1, stop_at + 1):
        now = t + 5 + step * 0.5
        if step == 1 or step % 5 == 0:
            loss = 0.3 + 0.4 * math.exp(-step / 20) + 0.02 * math.sin(step)
            events.append(
                Step(
                    time=now,
                    step=step,
                    total_steps=total_steps,
                    epoch=round(step / per_epoch, 4),
                    loss=round(loss, 4),
                    learning_rate=2e-3 * (1 - step / total_steps),
                    grad_norm=round(1.5 - step / total_steps, 3),
                    samples_per_s=round(30 + 5 * math.sin(step / 3), 2),
                    tokens_per_s=round(600 + 90 * math.sin(step / 3), 1),
                    elapsed_s=round(step * 0.5, 2),
                    eta_s=round((total_steps - step) * 0.5, 1),
                )
            )
        if step % per_epoch == 0:
            epoch = step // per_epoch
            events += [
                Phase(time=now + 0.1, name="evaluating"),
                Eval(
                    time=now + 0.2,
                    step=step,
                    epoch=float(epoch),
                    metrics={
                        "accuracy": 0.6 + 0.1 * epoch,
                        "f1": 0.55 + 0.1 * epoch,
                        "loss": round(0.7 - 0.1 * epoch, 4),
                    },
                ),
                Phase(time=now + 0.3, name="training"),
                Checkpoint(
                    time=now + 0.4,
                    step=step,
                    path=f"checkpoints/checkpoint-{step}",
                    reason="scheduled",
                ),
            ]
    end = t + 6 + stop_at * 0.5
    if outcome == "finished":
        events += [
            Phase(time=end, name="saving"),
            Finished(
                time=end + 1,
                step=total_steps,
                output_dir="/runs/demo/adapter",
                metrics={"accuracy": 0.9, "f1": 0.85, "loss": 0.4},
                elapsed_s=round(total_steps * 0.5 + 1, 2),
            ),
        ]
    elif outcome == "failed":
        events += [
            Log(time=end, level="warning", message="loss is rising"),
            Failed(time=end + 1, message="out of memory", hint="lower batch_size or max_length"),
        ]
    return events


def write_run(run_dir: Path, events: list[Event], *, dead_pid: bool = False) -> Path:
    """Write a run directory with config.toml and events.jsonl (and a dead engine's status)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    RunConfig().save(run_dir / "config.toml")
    writer = EventWriter(run_dir)
    for event in events:
        writer.emit(event)
    if dead_pid:
        (run_dir / "status.json").write_text(json.dumps({"pid": 999_999_999, "state": "running"}))
    return run_dir


@pytest.fixture
def fake_run(tmp_path: Path) -> Callable[..., Path]:
    """Factory: `fake_run(outcome="finished" | "failed" | "crashed", name=...)` -> run dir."""

    def make(outcome: str = "finished", name: str = "20240101-120000-demo", **kw: int) -> Path:
        events = fixed_events(outcome="crashed" if outcome == "crashed" else outcome, **kw)
        return write_run(tmp_path / "runs" / name, events, dead_pid=outcome != "finished")

    return make
