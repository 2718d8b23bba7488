"""The package's import graph points down the stack (DESIGN.md, Layout): no module imports itself
round a loop and no two top-level subpackages import each other. Every import counts, the ones
deferred inside functions and under `TYPE_CHECKING` too: a hidden edge is still a dependency."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "scenetg"

# Who may import whom, by top-level subpackage (or top-level module). A subpackage may always
# import the ones below it; anything not listed here is a plain module at the bottom.
LAYERS = {
    "video": 1, "models": 1, "grounding": 2,
    "curate": 3, "rl": 3, "eval": 3,
    "toy_task": 3, "demo_toy": 4, "demo": 4,
    "commands": 5, "cli": 6,
}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the project modules it imports (anywhere in the file)."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = name.split(".") if is_pkg else name.split(".")[:-1]
                    parent = parent[: len(parent) - (node.level - 1)]
                    base = ".".join(parent + ([base] if base else []))
                # `from pkg import submodule` depends on the submodule itself.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            else:
                continue
            for target in targets:
                if target.split(".")[0] == PACKAGE.name and target != name:
                    while target not in modules and "." in target:
                        target = target.rsplit(".", 1)[0]
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def top(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def test_no_import_loop_in_the_package():
    assert cycles(import_graph()) == []


def test_no_two_subpackages_import_each_other():
    edges = {(top(a), top(b)) for a, bs in import_graph().items() for b in bs if top(a) != top(b)}
    assert sorted((a, b) for a, b in edges if (b, a) in edges) == []


def _upward(src: int, dst: int) -> bool:
    """An import up the stack, or sideways between two subpackages of one layer (the bottom
    modules, layer 0, may use each other: the loop check covers them)."""
    return dst > src or (dst == src and src > 0)


def test_imports_point_down_the_stack():
    upward = sorted(
        f"{a} -> {b}"
        for a, bs in import_graph().items()
        for b in bs
        if top(a) != top(b) and _upward(LAYERS.get(top(a), 0), LAYERS.get(top(b), 0))
    )
    assert upward == []


def test_the_checks_see_a_loop_a_lazy_import_makes(tmp_path):
    """The walker finds an edge hidden in a function body and reports the loop it closes."""
    pkg = tmp_path / "scenetg"
    (pkg / "low").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low" / "__init__.py").write_text("")
    (pkg / "low" / "a.py").write_text("from scenetg.low import b\n")
    (pkg / "low" / "b.py").write_text("def f():\n    from scenetg.low.a import x\n")
    graph = import_graph(pkg)
    assert graph["scenetg.low.b"] == {"scenetg.low.a"}
    assert cycles(graph) == [["scenetg.low.a", "scenetg.low.b"]]


@pytest.mark.parametrize("public", [
    "scenetg.rl.parsing:parse_answer",
    "scenetg.rl.rewards:temporal_iou",
    "scenetg.rl.rewards:center_distance_reward",
    "scenetg.rl.rewards:iou_reward",
    "scenetg.rl.rewards:cendist_reward",
    "scenetg.rl.rewards:format_reward",
    "scenetg.rl.kl:timestamp_token_mask",
])
def test_public_import_paths_keep_working(public):
    """DESIGN.md's "Interfaces that others script against" names these paths."""
    import importlib

    module, name = public.split(":")
    assert callable(getattr(importlib.import_module(module), name))
