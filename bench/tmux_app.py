"""The real app in a detached tmux terminal, for benchmarks that measure it as a user sees it."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_app(session: str, size: tuple[int, int], env: str) -> None:
    """Start `finetune-tui` (with `env`, e.g. 'FINETUNE_TUI_RUNS=/x') in a new tmux session."""
    command = f"cd {ROOT} && {env} exec finetune-tui"
    cmd = ["tmux", "new-session", "-d", "-s", session, "-x", str(size[0]), "-y", str(size[1])]
    subprocess.run([*cmd, command], check=True)


def pane(session: str) -> str:
    """The visible text of a tmux session's pane."""
    out = subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=False
    )
    return out.stdout


def kill(session: str) -> None:
    """End a tmux session (quietly, if it is already gone)."""
    subprocess.run(["tmux", "kill-session", "-t", session], check=False)
