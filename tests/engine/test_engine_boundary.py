"""The engine is usable headless: it never imports Textual, and its light modules import no torch."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import engine

ROOT = Path(engine.__file__).resolve().parent.parent
ENGINE_MODULES = sorted(m.name for m in pkgutil.walk_packages(engine.__path__, "engine."))
# Modules the TUI imports on its UI thread and the CLI imports before any training.
LIGHT_MODULES = [
    "engine.cli.commands",
    "engine.config",
    "engine.rundir.events",
    "engine.rundir.runs",
    "engine.core.errors",
    "engine.data.readers",
    "engine.tasks",
    "engine.tasks.classification",
]
HEAVY = ("torch", "transformers", "peft", "accelerate", "sklearn", "pyarrow")


def imported_after(modules: list[str]) -> set[str]:
    """Top-level package names in sys.modules after importing `modules` in a fresh interpreter."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_engine_modules_are_found():
    for name in (
        "engine.cli",
        "engine.config",
        "engine.tasks.classification.data",
        "engine.rundir.events",
        "engine.training.train",
    ):
        assert name in ENGINE_MODULES


def test_no_engine_module_imports_textual():
    loaded = imported_after(ENGINE_MODULES)
    assert "torch" in loaded  # the heavy modules really were imported
    assert not {"textual", "textual_plotext", "tui"} & loaded


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_light_modules_import_no_heavy_libraries(module):
    loaded = imported_after([module])
    assert not set(HEAVY) & loaded, f"{module} imports {sorted(set(HEAVY) & loaded)}"
    assert "textual" not in loaded


def test_engine_source_never_mentions_textual_imports():
    for path in Path(engine.__file__).parent.rglob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")):
                assert "textual" not in stripped and not stripped.startswith(
                    ("from tui", "import tui")
                ), f"{path.name}: {stripped}"
