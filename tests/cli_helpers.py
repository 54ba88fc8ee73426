"""Running the `finetune-tui` console script in a subprocess, for the CLI tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import engine

ROOT = Path(engine.__file__).resolve().parent.parent
_SCRIPT = Path(sys.executable).parent / "finetune-tui"
CLI = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "tui.cli"]


def cli_env(runs_root: Path | None = None, **extra: str) -> dict[str, str]:
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(ROOT),
    )
    env.pop("FINETUNE_TUI_RUNS", None)
    if runs_root is not None:
        env["FINETUNE_TUI_RUNS"] = str(runs_root)
    env.update(extra)
    return env


def run_cli(*args: str, runs_root: Path, timeout: float = 300, **env: str):
    """Run `finetune-tui ARGS` with the runs root in $FINETUNE_TUI_RUNS."""
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(runs_root, **env),
        cwd=runs_root.parent,
    )


def last_json(stdout: str):
    return json.loads(stdout.strip().splitlines()[-1])


def assert_user_error(proc, *fragments: str) -> str:
    """Exit code 2 and one `error:` line on stderr that contains every fragment."""
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def run_dirs(root: Path) -> list[Path]:
    """Run directories under the root (the shared data cache is not one)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def train_in_process(root: Path, model: Path, data: Path, *flags: str) -> Path:
    """`finetune-tui train --task causal-lm` in this process (offline); the new run's directory."""
    import pytest

    from engine.cli.commands import main

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        code = main(
            ["--runs-root", str(root), "train", "--task", "causal-lm", "--model_name", str(model),
             "--data_file_path", str(data), *flags]
        )  # fmt: skip
    assert code == 0
    return next(p for p in root.iterdir() if (p / "config.toml").is_file())  # not .cache
