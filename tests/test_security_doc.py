"""docs/security.md names the test behind each promise: every test it names exists.

A reference is ``tests/path.py::test_name`` (or ``tests/path.py`` for a whole module); a
bare ``::test_name`` after one means the same file. A renamed or deleted test fails here, so
the threat model cannot go on citing a test that no longer holds its promise.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "security.md"
_REF = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?")


def _references() -> list[tuple[str, str | None]]:
    refs: list[tuple[str, str | None]] = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        current: str | None = None
        for path, name in _REF.findall(line):
            if path:
                current = path
            if current and (path or name):
                refs.append((current, name or None))
    return refs


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    }


def test_every_test_the_threat_model_names_exists() -> None:
    refs = _references()
    assert len(refs) >= 40, refs
    missing = []
    for path, name in refs:
        file = ROOT / path
        if not file.is_file():
            missing.append(path)
        elif name is not None and name not in _test_names(file):
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/security.md names tests that do not exist: {missing}"


def test_the_threat_model_covers_the_issues_list() -> None:
    text = DOC.read_text(encoding="utf-8")
    for promise in (
        "Other local users",
        "A web page in a browser on the same machine",
        "Accidental logging",
        "Backups and bug reports copied elsewhere",
        "/proc/PID/environ",
        "root",
    ):
        assert promise in text, promise
