"""Runtime inference imports nothing from training, evaluation or the phantom generator.

Every module under ``models/runtime`` is parsed and every import in it (module level, inside
functions and under ``TYPE_CHECKING`` alike) is checked against the forbidden packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[2] / "models" / "runtime"
FORBIDDEN = ("models.training", "models.evaluation", "models.phantoms")


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, dotted module) of every import statement anywhere in a module."""
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.append((node.lineno, node.module))
            names.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            names.append((node.lineno, "." * node.level + (node.module or "")))
    return names


def test_runtime_modules_exist() -> None:
    assert len(list(RUNTIME.rglob("*.py"))) >= 10


def test_runtime_imports_no_training_evaluation_or_phantoms() -> None:
    offending = []
    for path in sorted(RUNTIME.rglob("*.py")):
        for line, name in _imported(ast.parse(path.read_text(), filename=str(path))):
            if name.startswith(".") or any(name == f or name.startswith(f + ".")
                                           for f in FORBIDDEN):
                offending.append(f"{path.relative_to(RUNTIME.parents[1])}:{line} {name}")
    assert not offending, "runtime imports outside the runtime lifecycle:\n" + "\n".join(offending)


def test_checker_sees_imports_inside_functions() -> None:
    tree = ast.parse("def f():\n    from models.training.loop import run_training\n")
    assert (2, "models.training.loop") in _imported(tree)


def test_importing_runtime_loads_no_training_evaluation_or_phantoms() -> None:
    import subprocess
    import sys

    code = (
        "import importlib, pkgutil, sys\n"
        "import models.runtime as runtime\n"
        "for info in pkgutil.walk_packages(runtime.__path__, 'models.runtime.'):\n"
        "    importlib.import_module(info.name)\n"
        f"print(sorted(k for k in sys.modules if k.startswith({FORBIDDEN!r})))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=RUNTIME.parents[1], check=True)
    assert result.stdout.strip() == "[]"
