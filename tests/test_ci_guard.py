"""The conftest hook: under CI=true a skipped test that needs a system part fails the run."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

INNER_TEST = """
import pytest

@pytest.mark.keychain
def test_needs_keychain():
    pytest.skip("no Secret Service here")

@pytest.mark.root
def test_needs_root():
    pytest.skip("needs root to mount a tmpfs")

@pytest.mark.postgres
def test_needs_postgres():
    pytest.skip("no PostgreSQL server installed")

@pytest.mark.slow
def test_slow_may_skip():
    pytest.skip("slow tests may be skipped anywhere")

def test_plain():
    assert 1 + 1 == 2
"""

INI = """[pytest]
markers =
    keychain: k
    browser: b
    slow: s
    posix: p
    root: r
    postgres: pg
"""


def _run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    (tmp_path / "pytest.ini").write_text(INI)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_skip_of_marked_test_fails_under_ci(tmp_path: Path) -> None:
    result = _run(tmp_path, "true")
    assert result.returncode == 1, result.stdout
    assert "3 failed, 1 passed, 1 skipped" in result.stdout
    assert "CI=true: a test needing keychain was skipped" in result.stdout
    # The real-filesystem fault tests (tmpfs mounts) are a system part too.
    assert "CI=true: a test needing root was skipped" in result.stdout
    # So are the tests against a real PostgreSQL server (the store contract on both engines).
    assert "CI=true: a test needing postgres was skipped" in result.stdout


def test_same_skip_is_a_skip_locally(tmp_path: Path) -> None:
    result = _run(tmp_path, None)
    assert result.returncode == 0, result.stdout
    assert "1 passed, 4 skipped" in result.stdout


#: The helpers of tests/fsfaults.py that need root (a tmpfs mount, capabilities dropped):
#: each skips where it cannot run, which CI turns into a failure only for a test carrying
#: the ``root`` marker.
ROOT_HELPERS = frozenset({"needs_root", "mounted_tmpfs", "dac_dropped", "DROP_DAC"})


def _marks_root(decorators: list[ast.expr]) -> bool:
    for node in decorators:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Attribute) and sub.attr == "root":
                return True
    return False


def _uses_root_helpers(node: ast.AST) -> bool:
    return any(
        (isinstance(sub, ast.Name) and sub.id in ROOT_HELPERS)
        or (isinstance(sub, ast.Attribute) and sub.attr in ROOT_HELPERS)
        for sub in ast.walk(node)
    )


def test_every_test_using_a_root_helper_carries_the_root_marker() -> None:
    """Two tests of test_shared_home.py called ``needs_root()`` without the marker: where
    root is missing they skipped, and under CI=true that skip passed the run."""
    root = CONFTEST.parent
    unmarked = []
    for path in sorted([*root.glob("tests/**/*.py"), *root.glob("examples/*/tests/*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module_marked = any(
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)
            and _marks_root([node.value])
            for node in tree.body
        )
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if not node.name.startswith("test_") or not _uses_root_helpers(node):
                continue
            if not (module_marked or _marks_root(node.decorator_list)):
                unmarked.append(f"{path.relative_to(root)}::{node.name}")
    assert unmarked == []
