"""No import cycles inside mkunet, function-level (lazy) imports included.

Every module under ``src/mkunet`` is parsed with :mod:`ast` (nothing is imported). Each
``import mkunet.x`` / ``from mkunet.x import y`` / relative ``from .x import y``, at module
level or inside a function, is an edge to the module it names (``from pkg import sub`` is an
edge to ``pkg.sub`` when that is a module). Importing ``a.b.c`` also runs ``a/__init__`` and
``a/b/__init__``, so those packages are edges too (except the importer's own packages, which
are already being imported). A cycle in this graph is a real import-order hazard even when it
is hidden in a function body: it works today only because of *when* the import runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "mkunet"


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is_package)."""
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_package)
    return out


def _owner(name: str, modules: dict[str, tuple[Path, bool]]) -> str | None:
    """The module that defines ``name`` (``mkunet.io.read_volume`` -> ``mkunet.io``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path, is_package: bool, modules: dict[str, tuple[Path, bool]]) -> set[str]:
    """Modules of the package named by every import statement of ``module`` (any nesting level)."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {_owner(a.name, modules) for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the importer's package
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else _owner(target, modules))
    found.discard(None)
    own = {".".join(module.split(".")[:i]) for i in range(1, len(module.split(".")) + 1)}
    edges = set()
    for target in found:
        parts = target.split(".")
        edges |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}  # parent packages run first
    return {e for e in edges if e in modules and e not in own}


def import_graph() -> dict[str, set[str]]:
    """Intra-package import graph: module -> modules it imports (module and function level)."""
    modules = _modules()
    return {m: _imports(m, path, is_pkg, modules) for m, (path, is_pkg) in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of ``graph``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if state.get(root):
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_graph_sees_lazy_relative_and_package_imports():
    """The parser finds what the check relies on (guards against a test that silently sees nothing)."""
    graph = import_graph()
    assert "mkunet.io.dicom_in" in graph["mkunet.io.files"]  # module level
    assert "mkunet.preprocess.resample" in graph["mkunet.io.files"]  # inside read_mask
    assert "mkunet.preprocess" in graph["mkunet.io.files"]  # the package __init__ runs first
    assert "mkunet.report.figures" in graph["mkunet.run.patient"]  # inside a step function
    assert "mkunet.report.html" in graph["mkunet.report"]  # package __init__
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    if cycle is not None:
        pytest.fail("import cycle inside mkunet (module- or function-level imports): " + " -> ".join(cycle))


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@pytest.mark.parametrize(
    "module, forbidden",
    [
        ("mkunet.segmentation.candidates", ("mkunet.synth",)),  # detection never needs the generator
        ("mkunet.segmentation.lung", ("mkunet.synth",)),
        ("mkunet.report", ("mkunet.segmentation.register", "mkunet.synth")),  # the caller registers
    ],
)
def test_layering_is_one_way(module, forbidden):
    """Detection and the report reach neither the generator nor the registration (imports at any depth)."""
    bad = sorted(m for m in _reachable(import_graph(), module) if m.startswith(forbidden))
    assert not bad, f"{module} imports {bad} (directly or through other modules)"


def test_no_private_names_across_modules():
    """``from mkunet.x import _name`` only inside x itself; private modules (``_common``) only inside their package."""
    bad = []
    for module, (path, is_package) in _modules().items():
        package = module if is_package else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if not isinstance(node, ast.ImportFrom) or node.level or not (node.module or "").startswith(PACKAGE):
                continue
            target = node.module or ""
            names = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            if names and target != module:
                bad.append(f"{module}:{node.lineno} imports {names} from {target}")
            private = [p for p in target.split(".") if p.startswith("_")]
            if private and not target.startswith(package + "."):
                bad.append(f"{module}:{node.lineno} imports the private module {target}")
    assert not bad, "\n".join(bad)
