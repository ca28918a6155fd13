"""SQL lives in the catalog package: no module of picsift outside ``picsift/core/catalog/`` writes SQL.

Every string constant (and every literal part of an f-string) of every module is read from its syntax
tree; one that starts with an SQL keyword, or holds an SQL statement, is a finding. The catalog package
(:mod:`picsift.core.catalog`) is the one place that knows the schema.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "picsift"
CATALOG = PACKAGE / "core" / "catalog"

_KEYWORDS = ("SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER", "PRAGMA", "BEGIN",
             "COMMIT", "ROLLBACK", "SAVEPOINT", "VACUUM", "ANALYZE", "WITH", "FROM", "WHERE", "AND", "OR", "JOIN",
             "LEFT JOIN", "INNER JOIN", "ON", "GROUP BY", "ORDER BY", "HAVING", "LIMIT", "UNION", "VALUES",
             "IN", "NOT IN", "NOT EXISTS", "EXISTS", "SET")
#: An uppercase SQL keyword at the start of a string (after spaces or a parenthesis).
_STARTS = re.compile(r"^[\s(]*(?:" + "|".join(k.replace(" ", r"\s+") for k in _KEYWORDS) + r")\b")
#: An SQL statement or clause anywhere in a string.
_INSIDE = re.compile(r"\b(?:SELECT\s.+\sFROM|INSERT\s+(?:OR\s+\w+\s+)?INTO|DELETE\s+FROM|UPDATE\s+\w+\s+SET"
                     r"|CREATE\s+(?:TEMP\s+|TEMPORARY\s+|UNIQUE\s+)?(?:TABLE|INDEX|VIEW)|DROP\s+TABLE"
                     r"|\w+\s*(?:=|<|>|<=|>=|IN\s*\()\s*\?|\bIS\s+(?:NOT\s+)?NULL\b)", re.S)


def sql_strings(path: Path) -> list[tuple[int, str]]:
    """``(line, text)`` of every string literal in ``path`` that looks like SQL."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    f_string_parts = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    skipped = docstrings | f_string_parts
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped:
            text = node.value
        elif isinstance(node, ast.JoinedStr):  # an f-string: its literal parts, the values as a placeholder
            text = "".join(v.value if isinstance(v, ast.Constant) else "x" for v in node.values)
        else:
            continue
        if _STARTS.search(text) or _INSIDE.search(text):
            found.append((node.lineno, text))
    return found


def modules_outside_catalog() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if CATALOG not in p.parents)


def test_no_module_outside_the_catalog_writes_sql() -> None:
    findings = [f"{path.relative_to(PACKAGE.parent)}:{line}: {text[:70]!r}"
                for path in modules_outside_catalog()
                for line, text in sql_strings(path)]
    assert not findings, "SQL outside picsift.core.catalog:\n" + "\n".join(findings)


@pytest.mark.parametrize("text", [
    "SELECT 1 FROM files", "  INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", "DELETE FROM files WHERE path=?",
    " WHERE image_id=?", " AND value=?", " ORDER BY id", "UPDATE models SET version=version+1",
    "CREATE TEMP TABLE IF NOT EXISTS export_scope(image_id TEXT)", "image_id IN (SELECT image_id FROM objects)",
    "PRAGMA user_version", "score >= ?", "score IS NOT NULL",
])
def test_the_check_finds_sql(tmp_path: Path, text: str) -> None:
    module = tmp_path / "module.py"
    module.write_text(f"QUERY = {text!r}\nOTHER = f{text!r}\n")
    assert [line for line, _ in sql_strings(module)] == [1, 2]


def test_the_check_leaves_prose_alone(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text('"""Select images from a collection and update the index."""\n'
                      'MESSAGE = "no collection named {name!r}; select one of them"\n'
                      'HELP = "Insert the images, then delete the rest (or update them in place)"\n'
                      'LABEL = "Order by score"\n')
    assert sql_strings(module) == []
