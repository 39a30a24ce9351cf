"""The house's layering, checked on the source with ``ast`` (nothing is imported, so it takes milliseconds).

Every module under ``emabench/`` belongs to a stage; a module may import only its own stage and the stages below
(module-level and function-level imports, ``import x`` and ``from x import y``, relative imports resolved). The
torch-only libraries (averaging, optim) import torch, the standard library and themselves only. No two modules
import each other, directly or around a circle (a package's ``__init__`` importing its children counts as an edge
like any other, so no child may import its own package back).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "emabench"

# Bottom → top (README "Layout"); a module may import its own stage and the stages below.
STAGES = {
    "emabench": 0,  # the top package's __init__: the version only
    "emabench.errors": 0,
    "emabench.averaging": 0,
    "emabench.optim": 0,
    "emabench.config": 1,
    "emabench.tasks": 2,
    "emabench.stack": 3,
    "emabench.train": 4,
    "emabench.results": 5,
    "emabench.runs": 6,
    "emabench.report": 7,
    "emabench.track": 7,  # a user's own loop writes run folders: runs and tasks below it, never the trainer
    "emabench.tracking": 7,  # copies of the runs (and of the report, handed over by the CLI) in MLflow/TensorBoard
    "emabench.bench": 8,
    "emabench.integrations": 8,  # callbacks for other frameworks' loops (Lightning), over emabench.track
    "emabench.cli": 9,
    "emabench.__main__": 10,  # the entry point of ``python -m emabench``
}
LIBRARIES = {"emabench.averaging": "the averaging library", "emabench.optim": "the optimizer library"}
LIBRARY_MAY_IMPORT = {"torch", *sys.stdlib_module_names}


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` under ``root`` (a package's ``__init__`` is the package)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = (root.name, *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """Every module ``name`` imports, anywhere in the file, as ``(dotted name, line)``: the package's own modules
    resolved to the module imported (``from pkg import mod`` → ``pkg.mod``), others as written."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                child = f"{target}.{alias.name}"
                found.append((child if child in modules else target, node.lineno))
    return found


def own_module(target: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``target`` that is one of the package's modules, or ``None`` for a foreign import."""
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def stage(module: str) -> int | None:
    """The stage of ``module``: its own entry, or its package's (the top package's entry is its ``__init__`` only)."""
    owners = [p for p in STAGES if module == p or (p != "emabench" and module.startswith(p + "."))]
    return STAGES[max(owners, key=len)] if owners else None


def import_graph(root: Path) -> tuple[dict[str, set[str]], list[str]]:
    """The package's import graph (module → modules it imports) and every layering violation found on the way."""
    modules = module_files(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    problems = [f"{name}: belongs to no stage" for name in modules if stage(name) is None]
    for name, path in modules.items():
        for target, line in imports(name, path, modules):
            where = f"{path.relative_to(root.parent)}:{line}"
            imported = own_module(target, modules)
            library = next((lib for lib in LIBRARIES if name == lib or name.startswith(lib + ".")), None)
            if library and imported is None and target.split(".")[0] not in LIBRARY_MAY_IMPORT:
                problems.append(f"{where}: {name} ({LIBRARIES[library]}) imports {target}")
            if imported is None or imported == name:
                continue
            if library and not (imported == library or imported.startswith(library + ".")):
                problems.append(f"{where}: {name} ({LIBRARIES[library]}) imports {imported}")
            low, high = stage(name), stage(imported)
            if low is not None and high is not None and high > low:
                problems.append(f"{where}: {name} (stage {low}) imports {imported} (stage {high}), a higher stage")
            graph[name].add(imported)
    return graph, problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_every_module_imports_only_its_stage_and_below():
    graph, problems = import_graph(ROOT)
    assert len(graph) > 40  # the whole package was read
    assert not problems, "\n".join(problems)


def test_no_import_circle():
    graph, _ = import_graph(ROOT)
    found = cycles(graph)
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "emabench" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "emabench"


def test_the_check_catches_planted_violations(tmp_path: Path):
    """The checker itself, on a small tree with one violation of each kind (and a clean tree beside it)."""
    clean = {
        "__init__.py": "",
        "averaging/__init__.py": "from emabench.averaging.ema import EMA\n",
        "averaging/ema.py": "import math\nimport torch\nfrom .flat import pack_\n",
        "averaging/flat.py": "import torch\n",
        "optim/__init__.py": "import math\nimport torch\n",
        "config/__init__.py": "from emabench.config.schema import Config\n",
        "config/schema.py": "from emabench.averaging import EMA\n",
        "cli/__init__.py": "from emabench.cli import run\n",
        "cli/run.py": "def run():\n    from emabench.config import Config\n",
    }
    graph, problems = import_graph(_write(tmp_path / "clean", clean))
    assert not problems and not cycles(graph)
    assert graph["emabench.cli"] == {"emabench.cli.run"} and graph["emabench.averaging.ema"] == {
        "emabench.averaging.flat"
    }
    planted = clean | {
        "averaging/flat.py": "import numpy\n",  # (a) a foreign import in the library
        "averaging/ema.py": "def f():\n    from emabench.config import Config\n",  # (a) and (b), in a function
        "optim/__init__.py": "from emabench.averaging import EMA\n",  # (a) another library, same stage
        "config/schema.py": "from ..cli import run\n",  # (b) upward, relative
        "cli/run.py": "import emabench.cli\n",  # (c) a circle through the package's __init__
        "extra.py": "",
    }
    graph, problems = import_graph(_write(tmp_path / "planted", planted))
    text = "\n".join(problems)
    assert "emabench.averaging.flat (the averaging library) imports numpy" in text
    assert "emabench.averaging.ema (the averaging library) imports emabench.config" in text
    assert "emabench.averaging.ema (stage 0) imports emabench.config (stage 1)" in text
    assert "emabench.optim (the optimizer library) imports emabench.averaging" in text
    assert "emabench.config.schema (stage 1) imports emabench.cli.run (stage 9)" in text
    assert "emabench.extra: belongs to no stage" in text
    assert ["emabench.cli", "emabench.cli.run"] in cycles(graph)
