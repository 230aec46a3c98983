"""The package's structure, checked on its source: module-level imports form no circle,
dependencies point the way the README's Layout says, and no module outgrows one job."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nlp_lstm"
MAX_LINES = 440  # "about 400": a module past it holds more than one job


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_level_imports() -> Dict[str, Set[str]]:
    """module -> the nlp_lstm modules it imports at module level (not inside functions)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: Dict[str, Set[str]] = {}
    for name, path in modules.items():
        imported: Set[str] = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nlp_lstm"):
                # `from nlp_lstm.x import y` imports nlp_lstm.x.y where that is a module
                candidates = [f"{node.module}.{alias.name}" for alias in node.names]
                imported.update(c for c in candidates if c in modules)
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names if a.name.startswith("nlp_lstm"))
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    state: Dict[str, int] = {}  # 1: on the path, 2: done
    path: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_module_level_imports_form_no_circle():
    cycle = find_cycle(module_level_imports())
    assert not cycle, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


# layer -> layers it must not import (the README's Layout: data <- models <- inference <- tasks,
# training <- tasks <- entry points; inference <- serve <- cli: the server is the inference layer over HTTP)
FORBIDDEN = {
    "nlp_lstm.data": ("nlp_lstm.models", "nlp_lstm.inference", "nlp_lstm.training", "nlp_lstm.tasks", "nlp_lstm.cli"),
    "nlp_lstm.models": ("nlp_lstm.inference", "nlp_lstm.training", "nlp_lstm.tasks", "nlp_lstm.cli"),
    "nlp_lstm.inference": ("nlp_lstm.training", "nlp_lstm.tasks", "nlp_lstm.cli", "nlp_lstm.train_entry"),
    "nlp_lstm.training": ("nlp_lstm.inference", "nlp_lstm.tasks", "nlp_lstm.cli", "nlp_lstm.train_entry"),
    "nlp_lstm.tasks": ("nlp_lstm.cli", "nlp_lstm.train_entry"),
    "nlp_lstm.serve": ("nlp_lstm.training", "nlp_lstm.tasks", "nlp_lstm.cli", "nlp_lstm.train_entry"),
}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_dependencies_point_one_way(layer):
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        if not (name == layer or name.startswith(layer + ".")):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):  # function-level imports too
            targets = (
                [node.module]
                if isinstance(node, ast.ImportFrom) and node.module
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            wrong += [
                f"{name} imports {t}" for t in targets if any(t == f or t.startswith(f + ".") for f in FORBIDDEN[layer])
            ]
    assert not wrong, wrong


def test_no_module_outgrows_one_job():
    long = {
        module_name(p): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, long
