"""The README holds: its library example runs as written (doctest-style, in a temporary
directory), every test it names exists, and its line-by-line list of seed 003 marks nothing
done without a test."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.example_readme import (
    assert_cited_tests_exist,
    assert_done_rows_cite_tests,
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
    assert_cited_tests_exist(README, TESTS, at_least=60)


def test_every_done_row_names_a_test() -> None:
    assert_done_rows_cite_tests(
        README,
        TESTS,
        "## Seed 003, line by line",
        rows=34,
        statuses=("done", "partial", "not done", "n/a"),
        covered_by_all="every test above",
    )
