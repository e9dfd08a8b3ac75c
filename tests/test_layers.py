"""The package's layering, read from the source with ``ast`` (nothing is imported).

Layers, lowest first (a module may import from its own package or from a lower layer only)::

    [runtime, data] < core < inputs < weights < inference
        < [training, scoring_job, evaluation] < experiments < entry points

Packages in brackets share a layer and import nothing from each other. Entry points are the
top-level ``mrr_jax/<name>.py`` files (``python -m mrr_jax.<name>``); ``mrr_jax/__init__.py``
(the public API) sits at the inference layer and may import ``core`` and ``inference``. Every
import of ``mrr_jax.*`` counts: top-level, function-local and ``TYPE_CHECKING`` ones alike.

Also checked: the import graph has no cycle, no module is over ``MAX_MODULE_LINES`` lines and
no function (method, nested function) is over ``MAX_FUNCTION_LINES`` lines.
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mrr_jax"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80

# package (or "<entry>" / "<api>") -> rank; equal ranks in different packages do not mix.
RANK = {
    "runtime": 0, "data": 0,
    "core": 1,
    "inputs": 2,
    "weights": 3,
    "inference": 4, "<api>": 4,
    "training": 5, "scoring_job": 5, "evaluation": 5,
    "experiments": 6,
    "<entry>": 7,
}
API_MAY_IMPORT = {"core", "inference"}


def module_name(path: Path) -> str:
    """``mrr_jax/core/plan.py`` -> ``mrr_jax.core.plan``; a package's ``__init__`` -> its name."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the package: ``{dotted name: file}``."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(name: str) -> str:
    """The layer key of a module: its sub-package, ``<entry>`` or ``<api>``."""
    parts = name.split(".")
    if len(parts) == 1:
        return "<api>"
    if modules()[name].parent == PACKAGE and modules()[name].name != "__init__.py":
        return "<entry>"
    return parts[1]


def _resolve(base: str, names: list[str]) -> set[str]:
    """The modules an import names: ``from base import x`` is ``base.x`` if that is a module,
    else ``base`` itself."""
    known = modules()
    out = set()
    for name in names:
        full = f"{base}.{name}" if name != "*" else base
        out.add(full if full in known else base)
    return out


def _absolute(node: ast.ImportFrom, importer: str) -> str | None:
    if not node.level:
        return node.module
    pkg = importer.split(".")
    if not modules()[importer].name == "__init__.py":
        pkg = pkg[:-1]
    pkg = pkg[: len(pkg) - node.level + 1]
    return ".".join([*pkg, *([node.module] if node.module else [])])


@cache
def imports(name: str) -> dict[str, int]:
    """``{imported mrr_jax module: first line}`` of module ``name`` (every import statement)."""
    tree = ast.parse(modules()[name].read_text(encoding="utf-8"))
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        targets: set[str] = set()
        if isinstance(node, ast.Import):
            targets = {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, name)
            if base is not None:
                targets = _resolve(base, [a.name for a in node.names])
        for t in targets:
            if t == "mrr_jax" or t.startswith("mrr_jax."):
                while t not in modules():  # ``import mrr_jax.x.y`` of a name, not a module
                    t = t.rpartition(".")[0]
                if t != name:
                    found.setdefault(t, node.lineno)
    return found


def allowed(importer: str, target: str) -> bool:
    """True when the layer rule lets ``importer`` import ``target``."""
    a, b = layer(importer), layer(target)
    if a == "<api>":
        return b in API_MAY_IMPORT
    return a == b or RANK[a] > RANK[b]


MODULES = sorted(modules())


def test_every_package_has_a_layer():
    assert {layer(m) for m in MODULES} <= set(RANK), sorted({layer(m) for m in MODULES} - set(RANK))


@pytest.mark.parametrize("name", MODULES)
def test_imports_follow_the_layers(name):
    bad = [f"{modules()[name].relative_to(ROOT)}:{line} imports {t} ({layer(name)} -> {layer(t)})"
           for t, line in sorted(imports(name).items()) if not allowed(name, t)]
    assert not bad, "\n".join(bad)


def _cycles() -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in imports(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for m in MODULES:
        if m not in index:
            visit(m)
    return out


def test_no_import_cycles():
    cycles = _cycles()
    assert not cycles, "\n".join(" <-> ".join(c) for c in cycles)


def test_cycle_finder_finds_a_cycle(monkeypatch):
    """The checker itself: a two-module cycle is reported."""
    fake = {"mrr_jax.a": {"mrr_jax.b": 1}, "mrr_jax.b": {"mrr_jax.a": 1}, "mrr_jax.c": {}}
    me = sys.modules[__name__]
    monkeypatch.setattr(me, "MODULES", sorted(fake))
    monkeypatch.setattr(me, "imports", fake.__getitem__)
    assert _cycles() == [["mrr_jax.a", "mrr_jax.b"]]


def _long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [f"{path.relative_to(ROOT)}:{node.lineno} {node.name}() is "
            f"{node.end_lineno - node.lineno + 1} lines"
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]


@pytest.mark.parametrize("name", MODULES)
def test_module_and_function_sizes(name):
    path = modules()[name]
    lines = len(path.read_text(encoding="utf-8").splitlines())
    problems = _long_functions(path)
    if lines > MAX_MODULE_LINES:
        problems.insert(0, f"{path.relative_to(ROOT)} is {lines} lines")
    assert not problems, "\n".join(problems)


def test_layer_rule_examples():
    """The rule itself, on real module names."""
    assert allowed("mrr_jax.scoring_job.job", "mrr_jax.runtime.sharding")
    assert allowed("mrr_jax.evaluation.grid", "mrr_jax.inference.reranker")
    assert not allowed("mrr_jax.evaluation.grid", "mrr_jax.scoring_job.job")
    assert not allowed("mrr_jax.data.example", "mrr_jax.evaluation.evaluate")
    assert not allowed("mrr_jax.core.plan", "mrr_jax")
    assert allowed("mrr_jax", "mrr_jax.inference.reranker")
    assert not allowed("mrr_jax", "mrr_jax.weights.hf")
    assert allowed("mrr_jax.score", "mrr_jax.scoring_job.job")
    assert allowed("mrr_jax.experiments.bench", "mrr_jax")
