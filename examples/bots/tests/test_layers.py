"""Seed 003 keeps domain types apart from storage ("no sqlx types in boternity-types"; private
row structs): each domain has ``types.py`` (frozen dataclasses, standard library only, no
SQL), ``queries.py`` (SQL text) and ``repo.py`` (maps rows to those types, no SQL of its own
and no type definitions)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

BOTS = Path(__file__).resolve().parents[1]
DOMAINS = ("bot", "soul", "apikeys")
SQL = re.compile(
    r"^\s*(SELECT\b.*\bFROM\b|INSERT\s+(OR\s+\w+\s+)?INTO\b|UPDATE\s+\w+\s+SET\b|DELETE\s+FROM\b"
    r"|PRAGMA\b|CREATE\s+(TABLE|INDEX)\b)",
    re.IGNORECASE | re.DOTALL,
)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _sql(tree: ast.Module) -> list[str]:
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value)
    ]


def _imports(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_sql_detector_works() -> None:
    assert _sql(ast.parse('x = "SELECT id FROM bots"\ny = "select a name"')) == [
        "SELECT id FROM bots"
    ]


@pytest.mark.parametrize("domain", DOMAINS)
def test_domain_types_are_apart_from_storage(domain: str) -> None:
    types = _tree(BOTS / domain / "types.py")
    assert _sql(types) == []
    # Standard library only: no driver, no store, no repo.
    assert not {m for m in _imports(types) if m.startswith(("bastion", "apsw", "sqlite3"))}
    assert any(isinstance(n, ast.ClassDef) for n in types.body)
    repo = _tree(BOTS / domain / "repo.py")
    assert _sql(repo) == []  # its SQL is in queries.py
    assert f"examples.bots.{domain}.types" in _imports(repo)
    defined = {
        n.name
        for n in repo.body
        if isinstance(n, ast.ClassDef)
        and any(isinstance(d, ast.Attribute | ast.Call) for d in n.decorator_list)
    }
    assert defined == set(), f"{domain}/repo.py defines domain types: {defined}"
    assert _sql(_tree(BOTS / domain / "queries.py"))
