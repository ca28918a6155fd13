"""The package's layers (DESIGN.md): imports only go down, the graph has no cycles, widgets use the public API
(tests/test_widget_imports.py).

Imports inside functions count like any other: a lazy import is fine for start-up time, never as a way around
a cycle. Imports under ``if TYPE_CHECKING:`` (annotations only, never executed) must respect the layers too,
but are left out of the cycle check: two modules of one layer may name each other's types.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "picsift"

#: Lowest first. A module may import its own layer or a lower one.
LAYERS: list[tuple[str, ...]] = [
    ("picsift.errors", "picsift.atomic", "picsift.reading", "picsift.safe_paths", "picsift.signing",
     "picsift.workspace_files", "picsift.terminal", "picsift.deprecated"),
    ("picsift.embedding",),
    ("picsift.core",),
    ("picsift.index",),
    ("picsift.labels",),
    ("picsift.query",),
    ("picsift.analysis",),
    ("picsift.library",),
    ("picsift.service", "picsift.demo", "picsift.widgets"),
    ("picsift.cli", "picsift.__main__", "picsift"),
]

def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


def _typing_only(tree: ast.Module) -> set[ast.AST]:
    """The import statements under ``if TYPE_CHECKING:``."""
    blocks = [node for node in ast.walk(tree) if isinstance(node, ast.If)
              and isinstance(node.test, ast.Name | ast.Attribute)
              and (getattr(node.test, "id", None) or getattr(node.test, "attr", None)) == "TYPE_CHECKING"]
    return {inner for block in blocks for stmt in block.body for inner in ast.walk(stmt)
            if isinstance(inner, ast.Import | ast.ImportFrom)}


def _imports(name: str, path: Path, is_package: bool, modules: set[str], typing: bool = True) -> set[str]:
    """The picsift modules ``name`` imports, wherever the import statement is (without ``typing``: leaving out
    those under ``if TYPE_CHECKING:``)."""
    here = name.split(".") if is_package else name.split(".")[:-1]
    targets = set()
    tree = ast.parse(path.read_text(), str(path))
    skipped = set() if typing else _typing_only(tree)
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join([*here[: len(here) - node.level + 1], node.module or ""]).strip(".")
            else:
                base = node.module or ""
            for alias in node.names:
                target = f"{base}.{alias.name}"
                targets.add(target if target in modules else base)
        elif isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
    return {t for t in targets if t in modules and t != name}


def _graph(typing: bool = True) -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, is_package, set(modules), typing)
            for name, (path, is_package) in modules.items()}


def _layer(module: str) -> int:
    best = None
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (level, len(prefix))
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")
    return best[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycles():
    assert _cycles(_graph(typing=False)) == []


def test_the_typing_only_filter_leaves_out_just_type_checking_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nimport a\nif TYPE_CHECKING:\n    import b\n"
                      "def f():\n    import c\n")
    assert _imports("m", module, False, {"a", "b", "c"}) == {"a", "b", "c"}
    assert _imports("m", module, False, {"a", "b", "c"}, typing=False) == {"a", "c"}


def test_no_module_imports_a_higher_layer():
    upward = [f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
              for module, targets in sorted(_graph().items()) for target in sorted(targets)
              if _layer(target) > _layer(module)]
    assert upward == []


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set(), "c": {"b"}}, []),
])
def test_the_cycle_finder_finds_cycles(graph, expected):
    assert _cycles(graph) == expected
