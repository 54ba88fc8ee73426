"""Does watching a run in the TUI slow the training down? Headless vs under the TUI, side by side.

    python bench/tui_throughput.py [--model PATH] [--max-steps 120] [--repeats 2] [--ui tmux|pilot]

The same small config is trained `--repeats` times each way, alternating:
  headless  `finetune-tui train --config cfg.toml` (the engine prints to a pipe)
  tui       the app started, the config loaded with ctrl+o, started with ctrl+r, and the monitor
            left watching until the run finishes: in a real terminal (tmux, default when
            installed) or headless in this process (`App.run_test`, --ui pilot).
The app's own CPU use while its run trains is printed too (tmux mode): on a shared machine it
is a steadier figure than the ratio. samples/s comes from each run's own step events (training time only: the first logged
interval, which includes warm-up, is left out). Target: tui / headless >= 0.97.
Without --model a tiny BERT is built (tests/tiny.py); --model takes e.g. the MiniLM folder.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TUI_CPU: list[tuple[float, float]] = []  # (CPU seconds of the app, wall seconds) per tmux run

import psutil  # noqa: E402
from tmux_app import kill, pane, start_app  # noqa: E402

from engine.config import RunConfig  # noqa: E402
from engine.rundir.events import Finished, Step, read_events  # noqa: E402


def build_config(args: argparse.Namespace, model: str) -> RunConfig:
    """The benchmark config: bundled example data, no evaluation or checkpoints."""
    cfg = RunConfig()
    cfg.model.model_name = model
    cfg.training.max_steps = args.max_steps
    cfg.training.epochs = 100.0
    cfg.training.batch_size = args.batch_size
    cfg.training.logging_steps = args.logging_steps
    cfg.training.threads = args.threads
    cfg.training.eval_strategy = "no"
    cfg.training.save_strategy = "no"
    cfg.training.checkpoint_minutes = 0.0
    return cfg.validate()


def samples_per_s(run_dir: Path) -> float:
    """Training throughput of a finished run, from its step events (first interval left out)."""
    events = read_events(run_dir)
    if not any(isinstance(e, Finished) for e in events):
        raise RuntimeError(f"{run_dir} did not finish: see {run_dir / 'engine.log'}")
    steps = [e for e in events if isinstance(e, Step) and e.samples_per_s]
    rates, spans = [], []
    for prev, cur in zip(steps, steps[1:], strict=False):
        span = cur.elapsed_s - prev.elapsed_s
        if span > 0:
            rates.append(cur.samples_per_s * span)
            spans.append(span)
    if not spans:
        raise RuntimeError("too few step events: raise --max-steps or lower --logging-steps")
    return sum(rates) / sum(spans)


def only_run(root: Path) -> Path:
    """The single run directory under a runs root."""
    runs = [p for p in root.iterdir() if (p / "config.toml").is_file()]
    if len(runs) != 1:
        raise RuntimeError(f"expected one run under {root}, found {len(runs)}")
    return runs[0]


def env_for(root: Path) -> dict[str, str]:
    """The environment of a benchmark process (its own runs root, no hub)."""
    return dict(os.environ, FINETUNE_TUI_RUNS=str(root), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))


def run_headless(config_path: Path, root: Path) -> Path:
    """Train in the foreground with the CLI."""
    subprocess.run(
        ["finetune-tui", "train", "--config", str(config_path)],
        env=env_for(root),
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return only_run(root)


def _tmux_out(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def _wait_pane(session: str, text: str, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in pane(session):
            return
        time.sleep(0.1)
    raise RuntimeError(f"'{text}' never appeared; the pane shows:\n{pane(session)}")


def _keys(session: str, *keys: str, literal: bool = False) -> None:
    flags = ["-l"] if literal else []
    subprocess.run(["tmux", "send-keys", "-t", session, *flags, *keys], check=True)
    time.sleep(0.3)


def _load_config(session: str, config_path: Path, attempts: int = 3) -> None:
    """Load the config through the app's own dialog (ctrl+o, the path, enter)."""
    for _ in range(attempts):
        _keys(session, "C-o")
        _wait_pane(session, "finetune.toml")
        time.sleep(0.5)
        _keys(session, "C-u")
        _keys(session, str(config_path), literal=True)
        _keys(session, "Enter")
        try:
            _wait_pane(session, "settings loaded", timeout=5)
            return
        except RuntimeError:
            _keys(session, "Escape")
    raise RuntimeError("could not load the config through the dialog")


def run_tui_tmux(config_path: Path, root: Path, timeout: float) -> Path:
    """Drive the real app in a tmux terminal: load the config, start, watch until it ends."""
    session = f"tput{os.getpid()}"
    env = " ".join(
        f"{k}={v}"
        for k, v in env_for(root).items()
        if k in ("FINETUNE_TUI_RUNS", "HF_HUB_OFFLINE", "PYTHONPATH")
    )
    start_app(session, (100, 30), env)
    try:
        _wait_pane(session, "Ready")
        _load_config(session, config_path)
        _wait_pane(session, "LoRA can adapt")  # the form has looked at the model, as a user would
        _wait_pane(session, "Ready")
        pid = int(_tmux_out("display-message", "-p", "-t", session, "#{pane_pid}"))
        app, t0 = psutil.Process(pid), time.monotonic()
        cpu0 = sum(app.cpu_times()[:2])
        subprocess.run(["tmux", "send-keys", "-t", session, "C-r"], check=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            runs = list(root.glob("*/events.jsonl"))
            if runs and any(isinstance(e, Finished) for e in read_events(runs[0].parent)):
                break
            time.sleep(0.5)
        time.sleep(1.0)  # let the monitor draw the end, as a user would see it
        TUI_CPU.append((sum(app.cpu_times()[:2]) - cpu0, time.monotonic() - t0))
    finally:
        kill(session)
    return only_run(root)


def run_tui_pilot(config_path: Path, root: Path, timeout: float) -> Path:
    """Run the app headless in this process (`App.run_test`): start the run and watch it."""
    os.environ.update(env_for(root))
    from tui.app import FinetuneApp
    from tui.screens.monitor import MonitorScreen
    from tui.screens.setup import SetupScreen

    async def drive() -> None:
        app = FinetuneApp(root)
        async with app.run_test(size=(100, 30)) as pilot:
            setup = app.screen
            assert isinstance(setup, SetupScreen)
            setup.load_config(RunConfig.load(config_path))
            await pilot.pause(1.0)
            await pilot.press("ctrl+r")
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                screen = app.screen
                if isinstance(screen, MonitorScreen) and screen.state == "finished":
                    break
                await pilot.pause(0.5)

    asyncio.run(drive())
    return only_run(root)


def main() -> int:
    """Alternate headless and TUI runs; print samples/s of each and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="model folder (default: a tiny BERT)")
    parser.add_argument("--max-steps", type=int, default=120)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--logging-steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--ui", choices=("tmux", "pilot"), default="tmux" if shutil.which("tmux") else "pilot"
    )
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tui-throughput-"))
    try:
        model = args.model
        if not model:
            from tests.tiny import make_tiny_bert

            model = str(make_tiny_bert(work / "tiny-bert", hidden=128, layers=4))
        config_path = work / "bench.toml"
        build_config(args, model).save(config_path)
        print(
            f"model {model}; {args.max_steps} steps of batch {args.batch_size}; "
            f"tui driven via {args.ui}"
        )
        results: dict[str, list[float]] = {"headless": [], "tui": []}
        for i in range(args.repeats):
            for kind in ("headless", "tui"):
                root = work / f"{kind}-{i}"
                root.mkdir()
                if kind == "headless":
                    run_dir = run_headless(config_path, root)
                elif args.ui == "tmux":
                    run_dir = run_tui_tmux(config_path, root, args.timeout)
                else:
                    run_dir = run_tui_pilot(config_path, root, args.timeout)
                rate = samples_per_s(run_dir)
                results[kind].append(rate)
                print(f"  round {i + 1} {kind:8} {rate:8.1f} samples/s")
        for cpu, wall in TUI_CPU:
            print(
                f"  the app itself used {cpu:.1f} s of CPU in {wall:.0f} s while its run went "
                f"on ({100 * cpu / wall:.1f}% of one core)"
            )
        headless = statistics.mean(results["headless"])
        tui = statistics.mean(results["tui"])
        ratio = tui / headless
        print(
            f"headless {headless:.1f} samples/s   tui {tui:.1f} samples/s   "
            f"ratio {ratio:.3f} (target >= 0.97: {'ok' if ratio >= 0.97 else 'LOW'})"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
