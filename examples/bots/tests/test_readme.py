"""The README holds: its library example runs as written (doctest-style, in a temporary
directory), every test it names exists, and its line-by-line list of seed 003 marks nothing
done without a test."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.example_readme import (
    missing_test_references,
    references,
    requirement_rows,
    run_readme_doctests,
)

README = Path(__file__).resolve().parents[1] / "README.md"
TESTS = Path(__file__).resolve().parent


def test_readme_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # The example sets the master key in os.environ: restored after the test.
    monkeypatch.setenv("BOTERNITY_MASTER_KEY", "")
    assert run_readme_doctests(README) >= 15


def test_every_test_the_readme_names_exists() -> None:
    count, missing = missing_test_references(README, TESTS)
    assert count >= 60
    assert missing == []


def test_every_done_row_names_a_test() -> None:
    rows = requirement_rows(README, "## Seed 003, line by line")
    assert len(rows) >= 34
    assert [r[0] for r in rows] == [str(n) for n in range(1, len(rows) + 1)]
    for number, _requirement, status, tests in rows:
        assert status in {"done", "partial", "not done", "n/a"}, number
        if status == "done" and not tests.startswith("every test above"):
            assert references(tests, TESTS), f"row {number} is done without a test"
