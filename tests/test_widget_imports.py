"""Widgets use the library's public API only: no module under picsift/widgets imports the store, the catalog,
sampling, projections or label internals (every import counts: inside functions and ``TYPE_CHECKING`` too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import picsift

PACKAGE = Path(picsift.__file__).resolve().parent
WIDGETS = PACKAGE / "widgets"
#: What a widget may import from picsift (a module or anything below it).
ALLOWED = ("picsift.library", "picsift.query.imageset", "picsift.query.filters", "picsift.errors", "picsift.widgets",
           # base utilities (layer 0): read an image file safely; reach the workspace's thumbnail cache without
           # following links
           "picsift.reading", "picsift.workspace_files")


def _public_names() -> set[str]:
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    raise AssertionError("picsift/__init__.py has no __all__")


def imports(source: str, module: str) -> list[tuple[str, list[str]]]:
    """Every ``(absolute module, names)`` that ``source`` (the module ``module``) imports, anywhere in it."""
    package = module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.append((base, [alias.name for alias in node.names]))
    return found


def violations(source: str, module: str, file: str) -> list[str]:
    public = _public_names()
    bad = []
    for target, names in imports(source, module):
        if target != "picsift" and not target.startswith("picsift."):
            continue  # numpy, anywidget, ...
        if target == "picsift":
            bad += [f"{file}: from picsift import {name}" for name in names if name not in public]
        elif not any(target == ok or target.startswith(ok + ".") for ok in ALLOWED):
            bad.append(f"{file}: {target}")
    return bad


def test_the_check_sees_relative_function_level_and_type_checking_imports() -> None:
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..core.store import StoreSnapshot\n"
              "def f():\n    from ..analysis import sampling\n    import picsift.labels.metadata\n"
              "from .. import Library, _private\nfrom . import gallery\nfrom ..library import Library\n")
    assert sorted(violations(source, "picsift.widgets.x", "x.py")) == [
        "x.py: from picsift import _private", "x.py: picsift.analysis", "x.py: picsift.core.store",
        "x.py: picsift.labels.metadata"]


@pytest.mark.parametrize("path", sorted(WIDGETS.glob("*.py")), ids=lambda p: p.name)
def test_widgets_import_only_the_public_api(path: Path) -> None:
    module = f"picsift.widgets.{path.stem}"
    assert violations(path.read_text(encoding="utf-8"), module, path.name) == []
