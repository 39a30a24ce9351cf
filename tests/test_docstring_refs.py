"""Every cross-reference in a docstring (``:mod:``, ``:func:``, ``:class:``, ``:meth:``, ``:data:``, ``:attr:``,
``:exc:``) names something that exists: a module renamed or removed must not leave package docstrings that point
readers at it."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import emabench

ROLE = re.compile(r":(mod|func|class|meth|data|attr|exc):`~?([^`<]+?)(?:\s*<([^>]+)>)?`")
DEFINITIONS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _modules() -> list[ModuleType]:
    names = [m.name for m in pkgutil.walk_packages(emabench.__path__, "emabench.")]
    return [importlib.import_module(n) for n in ["emabench", *names] if not n.endswith("__main__")]  # main runs


def _lookup(root: Any, parts: list[str]) -> bool:
    for part in parts:
        root = getattr(root, part, None)
        if root is None:
            return False
    return True


def _exists(dotted: str) -> bool:
    """``dotted`` as an importable module followed by attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        return _lookup(module, parts[cut:])
    return False


def resolves(name: str, module: ModuleType, owner: Any) -> bool:
    """As a reader would look it up: relative (``.loop``) to the module's package; absolute; a sibling module of
    the same package (``comparisons.holm_correct``); or a name in the enclosing class or the module."""
    package = module.__name__ if hasattr(module, "__path__") else module.__name__.rpartition(".")[0]
    if name.startswith("."):
        return _exists(package + name)
    candidates = [owner, module] if owner is not None else [module]
    return _exists(name) or _exists(f"{package}.{name}") or any(_lookup(base, name.split(".")) for base in candidates)


def unresolved(module: ModuleType) -> list[str]:
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    found: list[str] = []

    def visit(node: ast.AST, owner: Any) -> None:
        doc = ast.get_docstring(node, clean=False) if isinstance(node, DEFINITIONS) else None
        for role, text, target in ROLE.findall(doc or ""):
            name = (target or text).strip()
            if not resolves(name, module, owner):
                where = getattr(node, "name", "module docstring")
                found.append(f"{module.__name__} ({where}): :{role}:`{name}`")
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, getattr(owner or module, child.name, None))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, owner)

    visit(tree, None)
    return found


def test_every_docstring_reference_resolves() -> None:
    modules = _modules()
    assert len(modules) > 80  # the walk found the package, not an empty shell
    missing = [problem for module in modules for problem in unresolved(module)]
    assert missing == [], "\n".join(missing)


def test_the_check_catches_a_stale_reference() -> None:
    """The check itself: a module that does not exist, a function that does not, and ones that do."""
    loop = importlib.import_module("emabench.train.loop")
    assert not resolves(".optim", emabench.train, None) and resolves(".loop", emabench.train, None)
    assert not resolves("emabench.report.figures.FIGURES", loop, None)
    assert resolves("Trainer.run_epoch", loop, None) and resolves("emabench.config.Config", loop, None)
