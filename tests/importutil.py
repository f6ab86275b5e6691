"""The modules a source file imports, read from its syntax tree (imports inside functions and
``importlib.import_module`` / ``__import__`` calls with a literal name included)."""

from __future__ import annotations

import ast
from pathlib import Path


def imported_modules(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``; relative imports are left
    out (they stay inside their package)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            if (name in ("import_module", "__import__") and isinstance(first, ast.Constant)
                    and isinstance(first.value, str)):
                found.append((node.lineno, first.value))
    return sorted(found)


def imports_of(package: Path, prefix: str) -> list[str]:
    """``file:line imports module`` for every import of ``prefix`` (the package or one of its
    modules) in the Python files under ``package``."""
    root = package.parent
    return [
        f"{path.relative_to(root)}:{line} imports {name}"
        for path in sorted(package.rglob("*.py"))
        for line, name in imported_modules(path.read_text(), str(path))
        if name == prefix or name.startswith(prefix + ".")
    ]
