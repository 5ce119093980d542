"""No import cycles among sgl's modules: every import (at module level or inside a function,
but not under TYPE_CHECKING) is an edge, and the graph must be acyclic."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"lang": "sgl", "runtime": "sgl.runtime", "kernels": "sgl.kernels"}


def module_names() -> dict[str, Path]:
    names = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names[".".join((package, *parts))] = path
    # sgl.runtime lives in runtime/, not lang/runtime: drop lang's shadows of the other packages
    return names


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    skip: set[int] = set()
    for node in ast.walk(tree):  # imports under `if TYPE_CHECKING:` are not run
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    edges = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            stem = base[: len(base) - node.level + 1] if node.level else []
            module = ".".join([*stem, *([node.module] if node.module else [])])
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in known:  # `from x import name` names a module or an attribute
                t = t.rpartition(".")[0]
            if t and t != name and t.startswith("sgl"):
                edges.add(t)
    return edges


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_import_cycles():
    known = module_names()
    graph = {}
    for name, path in known.items():
        edges = imports_of(name, path, known)
        # a package's __init__ importing its own submodules is not a cycle with them
        graph[name] = {e for e in edges if not (path.name == "__init__.py" and e.startswith(name + "."))}
        # a submodule depends on its package's __init__ only when it imports the package itself
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)
