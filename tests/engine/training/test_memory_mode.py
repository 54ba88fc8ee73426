"""memory_mode: the heap a run trains in (fast keeps freed blocks, lean returns them at once)."""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.config.validation import config_problems

ROOT = Path(__file__).resolve().parents[3]
GB = 1024**3

# Allocates 200 blocks of 1.5 MB, each followed by a small block that stays, writes them, frees
# the large ones and reports how much anonymous memory went back to the system.
FREED_PROBE = """
import ctypes, json, sys
from engine.core.hardware import tune_allocator
tune_allocator(sys.argv[1])
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon"):
            return int(line.split()[1]) * 1024
size = 1536 * 1024
blocks, kept = [], []
for _ in range(200):
    blocks.append(libc.malloc(size))
    ctypes.memset(blocks[-1], 1, size)
    kept.append(libc.malloc(4096))
before = anon()
for b in blocks:
    libc.free(b)
print(json.dumps({"returned": before - anon()}))
"""


def _returned(mode: str) -> int:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", FREED_PROBE, mode],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["returned"]


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or "libc.so" not in (ctypes.util.find_library("c") or ""),
    reason="glibc's heap only",
)
def test_lean_returns_freed_blocks_and_fast_keeps_them() -> None:
    total = 200 * 1536 * 1024
    assert _returned("lean") > 0.9 * total
    assert _returned("fast") < 0.2 * total


def test_engine_asks_torch_for_huge_pages_unless_the_user_chose() -> None:
    code = "import engine, os; print(os.environ.get('THP_MEM_ALLOC_ENABLE'))"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("THP_MEM_ALLOC_ENABLE", None)
    run = [sys.executable, "-c", code]
    assert subprocess.run(run, capture_output=True, text=True, env=env).stdout.strip() == "1"
    env["THP_MEM_ALLOC_ENABLE"] = "0"
    assert subprocess.run(run, capture_output=True, text=True, env=env).stdout.strip() == "0"


def test_a_large_model_threshold_never_undoes_lean(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.core import hardware

    calls: list[tuple[int, int]] = []

    class Libc:
        def mallopt(self, option: int, value: int) -> int:
            calls.append((option, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc())
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "libc.so.6")
    hardware.tune_allocator("lean")
    assert (-3, hardware.LEAN_MMAP_THRESHOLD) in calls
    calls.clear()
    hardware.mmap_large_blocks()
    assert calls == []  # 4 MB would raise lean's 1 MB
    hardware.tune_allocator("fast")
    hardware.mmap_large_blocks()
    assert calls[-1] == (-3, hardware.LARGE_MODEL_MMAP_THRESHOLD)


class _Estimate:
    def __init__(self, total: float) -> None:
        self.total = int(total)


def test_auto_is_lean_only_when_the_step_must_fit_in_half_the_free_ram() -> None:
    from engine.tasks.causal_lm.memory import STEP_FLOOR, decide_heap

    def step(on: bool) -> _Estimate:
        return _Estimate(1 * GB if on else 3 * GB)

    floor_gb = STEP_FLOOR / GB
    assert decide_heap("auto", step, free_bytes=20 * GB) == ("fast", "")
    # checkpointed, the step takes its bound (the floor): it fits in half of 2 x floor free
    assert decide_heap("auto", step, free_bytes=int(2 * STEP_FLOOR)) == ("fast", "")
    heap, why = decide_heap("auto", step, free_bytes=int(1.5 * STEP_FLOOR))
    assert heap == "lean" and f"{floor_gb:.1f} GB" in why
    assert f"half the {1.5 * floor_gb:.1f} GB free" in why
    # without checkpointing the whole step counts
    heap, why = decide_heap("auto", step, free_bytes=5 * GB, checkpointing=False)
    assert heap == "lean" and "3.0 GB" in why and "half the 5.0 GB free" in why
    assert decide_heap("auto", step, free_bytes=7 * GB, checkpointing=False)[0] == "fast"
    assert decide_heap("fast", step, free_bytes=1 * GB) == ("fast", "")
    assert decide_heap("lean", step, free_bytes=100 * GB)[0] == "lean"


def test_a_bad_memory_mode_says_what_to_write() -> None:
    cfg = RunConfig()
    cfg.training.memory_mode = "small"
    problems = config_problems(cfg)
    assert problems["training.memory_mode"] == (
        "memory_mode must be auto, fast or lean (got 'small')"
    )
