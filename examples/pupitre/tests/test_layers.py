"""Seed 004 workstream 4: command modules are orchestration only and define no SQL; every
statement lives in a domain's ``queries.py`` (read by its ``repo.py``)."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

PUPITRE = Path(__file__).resolve().parents[1]
#: A string that starts like an SQL statement (what a command module must never hold).
SQL = re.compile(
    r"^\s*(SELECT\b.*\bFROM\b|SELECT\s+[\d(]|INSERT\s+(OR\s+\w+\s+)?INTO\b|UPDATE\s+\w+\s+SET\b"
    r"|DELETE\s+FROM\b|REPLACE\s+INTO\b|PRAGMA\b|CREATE\s+(UNIQUE\s+|TEMP\s+)?"
    r"(TABLE|INDEX|TRIGGER|VIEW)\b|DROP\s+(TABLE|INDEX|TRIGGER|VIEW)\b|ALTER\s+TABLE\b"
    r"|WITH\s+\w+\s+AS\b|VACUUM\b)",
    re.IGNORECASE | re.DOTALL,
)


def sql_literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string constant in ``path`` that reads as SQL (docstrings are
    skipped: prose may name a statement)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and SQL.match(node.value)
    ]


def test_the_detector_finds_sql_literals(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        'def f():\n    """SELECT id FROM t, in a docstring."""\n'
        'x = "select 1"\ny = f"PRAGMA {x}"\nz = "DELETE FROM t WHERE id = ?"\n'
        'hint = "Create one with create_workspace(); select a workspace from the list."\n'
    )
    assert sorted(text for _, text in sql_literals(sample)) == [
        "DELETE FROM t WHERE id = ?",
        "PRAGMA ",
        "select 1",
    ]


@pytest.mark.parametrize("module", ["app.py", "upkeep.py"])
def test_command_modules_hold_no_sql(module: str) -> None:
    assert sql_literals(PUPITRE / module) == []


def test_repo_modules_map_rows_and_leave_the_sql_to_queries() -> None:
    """The seed's rule: ``queries.py`` holds SQL text, ``repo.py`` maps rows to typed
    results and holds none."""
    repos = sorted(PUPITRE.glob("*/repo.py"))
    assert len(repos) >= 7
    assert {str(p.relative_to(PUPITRE)): sql_literals(p) for p in repos} == {
        str(p.relative_to(PUPITRE)): [] for p in repos
    }


def test_every_domain_has_queries_and_repo() -> None:
    domains = [p for p in PUPITRE.iterdir() if (p / "queries.py").exists()]
    assert {d.name for d in domains} >= {
        "workspace",
        "talk",
        "quest",
        "feedback",
        "pack",
        "settings",
        "diagnostics",
    }
    for domain in domains:
        assert (domain / "repo.py").exists(), domain


def _called_names(path: Path, module: str) -> set[str]:
    """Names used as ``<module>.<name>`` in ``path`` (the repo functions a test calls)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == module
    }


def test_every_domain_carries_its_own_table_level_tests() -> None:
    """Seed 004 workstream 4: "domain repo/query modules carry their own tests". Each domain
    has ``tests/domains/test_<domain>.py``, which calls every function its ``repo.py``
    exports (a repo function added without a test fails here), and every table of the two
    schemas is named by the docstring of the domain test that writes and reads it."""
    domains = sorted(p.name for p in PUPITRE.iterdir() if (p / "repo.py").exists())
    tests = PUPITRE / "tests" / "domains"
    untested: dict[str, list[str]] = {}
    for domain in domains:
        test = tests / f"test_{domain}.py"
        assert test.is_file(), f"domain {domain} has no tests/domains/test_{domain}.py"
        module = importlib.import_module(f"examples.pupitre.{domain}.repo")
        functions = [name for name in module.__all__ if inspect.isfunction(getattr(module, name))]
        missing = sorted(set(functions) - _called_names(test, "repo"))
        if missing:
            untested[domain] = missing
    assert untested == {}
    docs = " ".join(
        ast.get_docstring(ast.parse(p.read_text(encoding="utf-8"))) or ""
        for p in tests.glob("test_*.py")
    )
    tables = set(re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", _schema_text()))
    assert len(tables) >= 11
    assert sorted(t for t in tables if f"``{t}``" not in docs) == []


def _schema_text() -> str:
    """Every CREATE TABLE of the two namespaces (SQL files and Python steps alike)."""
    migrations = PUPITRE / "migrations"
    return "\n".join(
        p.read_text(encoding="utf-8") for p in migrations.rglob("*") if p.suffix in {".sql", ".py"}
    )
