"""Static checks of the package layout (nothing is imported; every module is parsed with :mod:`ast`).

* **Private names stay private.** No module imports a ``_private`` name from another module
  (``from mkunet.x import _helper``), and a private module (``_fields.py``) is imported only
  from inside its own package.
* **Layering is one way.** A subpackage imports only from the layers below it (``FORBIDDEN``):
  detection and the report never import the synthetic generator, the report never reaches
  into the registration, analysis never calls the segmentation, and so on.
* **Modules and functions stay readable.** A module over ``MAX_MODULE_LINES`` lines, or a
  function over ``MAX_FUNCTION_LINES`` lines of code (its docstring not counted), needs an
  entry in an allow-list below with the reason.

The import-cycle check lives in ``tests/test_imports.py``; its graph is reused here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.test_imports import PACKAGE, SRC, _modules, import_graph

MAX_MODULE_LINES = 800
MAX_FUNCTION_LINES = 80

# module (dotted) -> why it may be longer than MAX_MODULE_LINES
LONG_MODULES: dict[str, str] = {}

# "module:function" -> why it may be longer than MAX_FUNCTION_LINES lines of code
LONG_FUNCTIONS: dict[str, str] = {}

# subpackage -> the subpackages (or modules) it must not import, with the reason
FORBIDDEN: dict[str, dict[str, str]] = {
    "mkunet.volume": {p: "the Volume type is the bottom layer" for p in ("mkunet.io", "mkunet.segmentation")},
    "mkunet.utils": {p: "utilities are the bottom layer" for p in ("mkunet.io", "mkunet.segmentation")},
    "mkunet.preprocess": {
        p: "preprocessing sits below models and segmentation"
        for p in ("mkunet.segmentation", "mkunet.analysis", "mkunet.run", "mkunet.report", "mkunet.synth")
    },
    "mkunet.analysis": {
        p: "analysis measures masks; it never segments, runs cohorts or draws"
        for p in ("mkunet.segmentation", "mkunet.run", "mkunet.report", "mkunet.cli", "mkunet.train", "mkunet.synth")
    },
    "mkunet.segmentation": {
        p: "segmentation is used by runs, reports and training, never the reverse; it never sees the generator"
        for p in ("mkunet.run", "mkunet.report", "mkunet.cli", "mkunet.train", "mkunet.synth")
    },
    "mkunet.report": {
        "mkunet.segmentation.register": "the report draws what the run stored; registration internals stay inside",
        "mkunet.synth": "the report never needs the generator",
        "mkunet.train": "the report never trains",
        "mkunet.cli": "the CLI is the top layer",
    },
    "mkunet.io": {
        p: "input and output sit below segmentation, analysis and reports"
        for p in (
            "mkunet.segmentation",
            "mkunet.analysis",
            "mkunet.report",
            "mkunet.cli",
            "mkunet.train",
            "mkunet.synth",
        )
    },
    "mkunet.models": {
        p: "networks know nothing of cohorts, reports or the generator"
        for p in ("mkunet.run", "mkunet.report", "mkunet.cli", "mkunet.synth")
    },
}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _parsed() -> dict[str, tuple[Path, ast.Module]]:
    return {m: (p, ast.parse(p.read_text(encoding="utf-8"), filename=str(p))) for m, (p, _) in _modules().items()}


def _package_of(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


def private_imports() -> list[str]:
    """``importer: from target import _name`` for every private name or private module crossing a module."""
    modules = _modules()
    found = []
    for module, (_path, tree) in _parsed().items():
        package = _package_of(module, modules[module][1])
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                full = f"{target}.{alias.name}"
                if full in modules:  # `from pkg import _module`: a private module of another package?
                    if _is_private(alias.name) and package != target:
                        found.append(f"{module}: from {target} import {alias.name} (private module of another package)")
                elif _is_private(alias.name) and target != module:
                    found.append(f"{module}: from {target} import {alias.name}")
            if any(_is_private(p) for p in target.split(".")) and not (package + ".").startswith(
                target.rpartition(".")[0] + "."
            ):
                found.append(f"{module}: from {target} import ... (private module of another package)")
    return found


def layering_violations() -> list[str]:
    out = []
    for module, targets in import_graph().items():
        for layer, banned in FORBIDDEN.items():
            if module != layer and not module.startswith(layer + "."):
                continue
            for target in targets:
                for prefix, why in banned.items():
                    if target == prefix or target.startswith(prefix + "."):
                        out.append(f"{module} imports {target}: {why}")
    return out


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function without its docstring."""
    lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        doc = body[0]
        if isinstance(doc.value.value, str):  # type: ignore[attr-defined]
            lines -= doc.end_lineno - doc.lineno + 1  # type: ignore[operator]
    return lines


def long_modules() -> dict[str, int]:
    return {
        m: n
        for m, (p, _) in _modules().items()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }


def long_functions() -> dict[str, int]:
    out = {}
    for module, (_, tree) in _parsed().items():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and (n := _code_lines(node)) > MAX_FUNCTION_LINES
            ):
                out[f"{module}:{node.name}"] = n
    return out


def test_checks_see_what_they_check():
    """Guards against a check that silently sees nothing."""
    assert "mkunet.segmentation.lesion" in _parsed()
    tree = ast.parse('def f():\n    """Doc\n    string."""\n    a = 1\n    return a\n')
    assert _code_lines(tree.body[0]) == 3  # type: ignore[arg-type]
    assert _is_private("_x") and not _is_private("__version__") and not _is_private("x")
    assert (SRC / PACKAGE / "__init__.py").is_file()


def test_no_private_name_crosses_a_module():
    bad = private_imports()
    if bad:
        pytest.fail("private names imported across modules (make them public or move them):\n" + "\n".join(bad))


def test_layering_is_one_way():
    bad = layering_violations()
    if bad:
        pytest.fail("imports against the layering:\n" + "\n".join(sorted(set(bad))))


def test_no_long_module_without_a_reason():
    found = long_modules()
    bad = {m: n for m, n in found.items() if m not in LONG_MODULES}
    if bad:
        pytest.fail(
            f"modules over {MAX_MODULE_LINES} lines (split them, or add them to LONG_MODULES with the reason): "
            + ", ".join(f"{m} ({n})" for m, n in sorted(bad.items()))
        )
    stale = set(LONG_MODULES) - set(found)
    assert not stale, f"LONG_MODULES entries no longer needed: {sorted(stale)}"


def test_no_long_function_without_a_reason():
    found = long_functions()
    bad = {f: n for f, n in found.items() if f not in LONG_FUNCTIONS}
    if bad:
        pytest.fail(
            f"functions over {MAX_FUNCTION_LINES} lines of code (break them into steps, or add them to "
            "LONG_FUNCTIONS with the reason): " + ", ".join(f"{f} ({n})" for f, n in sorted(bad.items()))
        )
    stale = set(LONG_FUNCTIONS) - set(found)
    assert not stale, f"LONG_FUNCTIONS entries no longer needed: {sorted(stale)}"
