"""Run directories built from fake events and status files, for tests that need no real engine."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

from engine.config import RunConfig
from engine.rundir.events import Eval, Event, EventWriter, Failed, Finished, Started, Step, Stopped
from engine.rundir.runs import STATUS_FILE, write_status

_DEAD_PID: int | None = None


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    global _DEAD_PID
    if _DEAD_PID is None:
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        proc.wait()
        _DEAD_PID = proc.pid
    return _DEAD_PID


def eval_metrics(accuracy: float) -> dict:
    """Plausible two-class eval metrics with the given accuracy."""
    return {
        "accuracy": accuracy,
        "f1": accuracy - 0.01,
        "loss": 1 - accuracy,
        "per_class": {
            "negative": {"precision": accuracy, "recall": accuracy, "f1": accuracy, "support": 10},
            "positive": {"precision": accuracy, "recall": accuracy, "f1": accuracy, "support": 10},
        },
        "confusion": [[8, 2], [2, 8]],
        "labels": ["negative", "positive"],
    }


def make_fake_run(
    root: Path,
    name: str,
    state: str,
    *,
    steps: int = 10,
    total: int = 20,
    t0: float = 1.8e9,
    accuracy: float | None = 0.8,
    loss0: float = 0.7,
    message: str = "CUDA is not a thing here",
) -> Path:
    """A run directory whose events and status make `list_runs` report `state`."""
    run_dir = root / f"20270115-0{len(list(root.glob('*'))) if root.is_dir() else 0:05d}-{name}"
    run_dir.mkdir(parents=True)
    cfg = RunConfig()
    cfg.model.model_name = f"/models/{name}-model"
    cfg.data.data_file_path = f"/data/{name}.jsonl"
    cfg.save(run_dir / "config.toml")
    writer = EventWriter(run_dir)
    events: list[Event] = [
        Started(
            time=t0,
            run_id=run_dir.name,
            model=cfg.model.model_name,
            total_steps=total,
            labels=["negative", "positive"],
        )
    ]
    if state != "starting":
        for i in range(1, steps + 1):
            loss = loss0 * math.exp(-i / 8) + 0.05
            events.append(Step(time=t0 + i, step=i, total_steps=total, loss=round(loss, 4)))
        if accuracy is not None:
            events.append(Eval(time=t0 + steps + 0.5, step=steps, metrics=eval_metrics(accuracy)))
    else:
        events = []
    final = {
        "finished": Finished(time=t0 + steps + 1, step=steps, output_dir=str(run_dir / "adapter")),
        "stopped": Stopped(time=t0 + steps + 1, step=steps, reason="stop requested"),
        "failed": Failed(time=t0 + steps + 1, message=message, hint="fix it"),
    }.get(state)
    if final is not None:
        events.append(final)
    for event in events:
        writer.emit(event)
    if state in ("running", "starting"):
        import psutil

        me = psutil.Process()
        write_status(
            run_dir, pid=os.getpid(), pid_start=me.create_time(), state=state, launched_at=t0
        )
    else:
        write_status(run_dir, pid=dead_pid(), pid_start=None, state=state, launched_at=t0)
    return run_dir


BAD_EVENTS = [
    '{"type":"eval","time":1.8e9,"step":3,"metrics":"notadict"}',
    '{"type":"step","time":"noon","step":"x","loss":"low"}',
    '{"type":"started","time":1.8e9,"labels":"ab","config":[1],"total_steps":null}',
    '{"type":"finished","time":1.8e9,"metrics":[1,2],"step":2.5}',
    '{"type":"failed","message":{"a":1}}',
    "[1,2,3]",
    '"just a string"',
]


def malformed_runs(root: Path) -> list[Path]:
    """A good run beside runs with broken events, status files and folders."""
    good = make_fake_run(root, "good", "finished")
    bad_event = make_fake_run(root, "badevent", "finished")
    with open(bad_event / "events.jsonl", "a") as fh:
        fh.write("\n".join(BAD_EVENTS) + "\n")
    list_status = make_fake_run(root, "liststatus", "stopped")
    (list_status / STATUS_FILE).write_text("[1,2]")
    pid_status = make_fake_run(root, "pidstatus", "stopped")
    (pid_status / STATUS_FILE).write_text('{"pid": "abc", "pid_start": "x", "launched_at": []}')
    no_dir = make_fake_run(root, "eventsdir", "finished")
    (no_dir / "events.jsonl").unlink()
    (no_dir / "events.jsonl").mkdir()
    empty_cfg = make_fake_run(root, "emptycfg", "finished")
    (empty_cfg / "config.toml").write_text("")
    return [good, bad_event, list_status, pid_status, no_dir, empty_cfg]


REPO = Path(__file__).resolve().parent.parent


def engine_env(root: Path) -> dict[str, str]:
    """The environment for engine subprocesses: offline, this checkout importable, a runs root."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        FINETUNE_TUI_RUNS=str(root),
        TOKENIZERS_PARALLELISM="false",
    )
    env["PYTHONPATH"] = str(REPO) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    return env


def cli(root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `finetune-tui --runs-root ROOT ARGS...` in a subprocess and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", "--runs-root", str(root), *args],
        capture_output=True,
        text=True,
        env=engine_env(root),
        cwd=str(REPO),
        timeout=timeout,
    )


def varied_tiny_bert(folder: Path) -> Path:
    """The tiny BERT of `tests.tiny`, re-initialised with larger weights so that its outputs
    depend on the text (the default 0.02 init gives nearly the same logits for every input)."""
    import torch
    from transformers import BertForSequenceClassification

    from tests.tiny import make_tiny_bert

    make_tiny_bert(folder)
    model = BertForSequenceClassification.from_pretrained(folder)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def train_tiny(root: Path, model: Path, *flags: str) -> Path:
    """Train a tiny run in the foreground with the headless CLI; returns its run directory."""
    before = set(root.iterdir()) if root.is_dir() else set()
    done = cli(root, "train", "--model_name", str(model), *flags)
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = {p for p in set(root.iterdir()) - before if not p.name.startswith(".")}
    return run_dir
