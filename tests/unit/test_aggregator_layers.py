"""The aggregator's import arrows (issue 24): the service sits on top of the fleet layer, the
fleet layer on dispatch and the store; nothing below the service imports it, and no two
modules import each other (directly or round a loop), counting imports inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(package: str) -> dict[str, set[str]]:
    """module -> the project modules it imports (anywhere in the file)."""
    out: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        out[module] = found
    return {m: {i for i in imps if i in out and i != m} for m, imps in out.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_nothing_below_the_service_imports_it() -> None:
    graph = _imports("aggregator")
    below = [m for m in graph if m.startswith(("aggregator.fleet", "aggregator.dispatch", "aggregator.store"))
             or m in ("aggregator.planner", "aggregator.feeder_control")]
    assert below
    wrong = {m: sorted(i for i in graph[m] if i.startswith("aggregator.service")) for m in below}
    assert not {m: i for m, i in wrong.items() if i}


def test_no_import_cycles_in_the_aggregator() -> None:
    assert _cycles(_imports("aggregator")) == []


def test_the_check_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
