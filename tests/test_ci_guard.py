"""The conftest hook: under CI=true a skipped test that needs a system part fails the run."""

from __future__ import annotations

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
