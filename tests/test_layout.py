"""The parts import only what ARCHITECTURE.md allows, and no module imports itself in a circle.

Read from the source (every import statement, also those inside functions), so a lazy import
that would only fail at run time is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("deid", "ciagan", "vqgan", "deid_eval", "demo")
# part -> the project packages (or modules) it must not import; prefixes of dotted names
FORBIDDEN = {
    "deid": ("ciagan", "vqgan", "deid_eval", "demo"),
    "ciagan": ("vqgan", "demo", "deid_eval"),  # deid_eval.metrics is allowed, see below
    "vqgan": ("ciagan", "demo", "deid_eval"),
    "deid_eval": ("ciagan", "vqgan", "demo"),
}
ALLOWED = {"ciagan": ("deid_eval.metrics",), "vqgan": ("deid_eval.metrics",)}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


MODULES = _modules()


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_each_part_imports_only_what_it_may(part: str) -> None:
    wrong = []
    for name, path in MODULES.items():
        if not _within(name, part):
            continue
        for imported in _imports(path):
            if any(_within(imported, p) for p in ALLOWED.get(part, ())):
                continue
            if any(_within(imported, p) for p in FORBIDDEN[part]):
                wrong.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles() -> None:
    graph = {
        name: {i for i in _imports(path) if i in MODULES and i != name}
        for name, path in MODULES.items()
    }
    cycles, index, low, stack, on_stack = [], {}, {}, [], set()

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                cycles.append(" <-> ".join(sorted(component)))

    for node in graph:
        if node not in index:
            visit(node)
    assert not cycles, "\n".join(cycles)
