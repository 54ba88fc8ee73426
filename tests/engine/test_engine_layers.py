"""The engine's folders stay layered: no import circles, and no lower layer imports a higher one.

The order, lowest first, is the one the README's developer section draws. Every import counts,
the ones inside functions too: a lazy import that goes up is still a circle waiting to happen.
"""

from __future__ import annotations

import ast
from pathlib import Path

import engine

ENGINE = Path(engine.__file__).resolve().parent
# Lowest first: a package may import its own modules and those of any package before it.
LAYERS = (
    "core",
    "config",
    "rundir",
    "data",
    "models",
    "tasks",
    "scaleout",
    "training",
    "runs",
    "cli",
)
SHIMS = {"engine.worker"}  # `python -m engine.worker`, the documented entry, kept as a one-liner


def module_name(path: Path) -> str:
    """Dotted name of an engine source file."""
    parts = path.relative_to(ENGINE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def engine_modules() -> dict[str, Path]:
    """Every engine module by dotted name."""
    return {module_name(p): p for p in ENGINE.rglob("*.py")}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The engine modules a file imports at run time (anywhere in it), as module names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
        for inner in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:  # names for type hints only: not imported at run time
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("engine"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if not node.module.startswith("engine"):
                continue
            for alias in node.names:  # `from engine.runs import queue` imports a module
                child = f"{node.module}.{alias.name}"
                found.add(child if child in modules else node.module)
    return {name for name in found if name in modules}


def layer_of(name: str) -> int:
    """Index of a module's package in LAYERS (the package root counts as core; -1 elsewhere)."""
    parts = name.split(".")
    if len(parts) == 1:
        return 0  # engine/__init__ only tunes threads (engine.core.hardware) before torch loads
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else -1


def graph() -> dict[str, set[str]]:
    """Module -> the engine modules it imports (itself left out)."""
    modules = engine_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def test_every_module_lives_in_a_layer() -> None:
    stray = {n for n in engine_modules() if layer_of(n) < 0} - SHIMS
    assert not stray, f"modules outside the layer folders: {sorted(stray)}"


def test_no_lower_layer_imports_a_higher_one() -> None:
    upward = [
        f"{name} -> {target}"
        for name, targets in graph().items()
        if name not in SHIMS
        for target in targets
        if layer_of(target) > layer_of(name)
    ]
    assert not upward, "imports that go up a layer:\n" + "\n".join(sorted(upward))


def test_no_import_circles() -> None:
    edges = graph()
    done: set[str] = set()
    on_path: list[str] = []

    def visit(name: str) -> list[str] | None:
        if name in on_path:
            return on_path[on_path.index(name) :] + [name]
        if name in done:
            return None
        on_path.append(name)
        for target in sorted(edges[name]):
            circle = visit(target)
            if circle:
                return circle
        on_path.pop()
        done.add(name)
        return None

    for name in sorted(edges):
        circle = visit(name)
        assert circle is None, "import circle: " + " -> ".join(circle)


def test_each_package_says_what_it_holds_and_may_import() -> None:
    for layer in LAYERS:
        init = ENGINE / layer / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and "import" in doc.lower(), f"engine/{layer}/__init__.py needs its docstring"


def test_the_checker_sees_an_upward_import_and_a_circle(tmp_path: Path) -> None:
    upward = tmp_path / "mod.py"
    upward.write_text("def f():\n    from engine.cli.commands import main\n")
    modules = engine_modules()
    assert imports_of(upward, modules) == {"engine.cli.commands"}
    assert layer_of("engine.cli.commands") > layer_of("engine.core.errors")
    package_form = tmp_path / "pkg.py"
    package_form.write_text("from engine.runs import queue\nfrom engine import config\n")
    assert imports_of(package_form, modules) == {"engine.runs.queue", "engine.config"}
