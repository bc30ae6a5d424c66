"""The house rules the code keeps: no import cycle (lazy imports included), strategies depend
only on the core, modules small enough to read whole, no docstring citing a missing document."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "strategies")
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """Every module of the two packages by dotted name (packages by their ``__init__``)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports anywhere in its body (functions included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            names = [n for n in names if n in known][:1] or [node.module]
        else:
            continue
        out.update(n for n in names if n in known)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(path, set(mods)) - {name} for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_anywhere_lazy_imports_included():
    edges = graph()
    assert "benchmark.run.grid" in edges and edges["benchmark.run.grid"]
    assert cycles(edges) == []


def test_strategies_depend_on_the_core_only():
    for name, deps in graph().items():
        if name.startswith("strategies"):
            outside = {d for d in deps if d.startswith("benchmark")
                       and not d.startswith("benchmark.core")}
            assert not outside, (name, outside)


@pytest.mark.parametrize("name, path", sorted(modules().items()))
def test_modules_are_small_and_cite_no_missing_document(name, path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"{name} has more than {MAX_LINES} lines"
    assert "SPEC " not in text, f"{name} cites SPEC, which is not in the repository"
    for doc in ("docs/design.md",):
        if doc in text:
            assert (ROOT / doc).is_file()
