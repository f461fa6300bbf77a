"""The README holds: every test it names exists, and its line-by-line list of the seed marks
nothing done without a test that proves it."""

from __future__ import annotations

from pathlib import Path

from tests.example_readme import assert_cited_tests_exist, assert_done_rows_cite_tests

README = Path(__file__).resolve().parents[1] / "README.md"
TESTS = Path(__file__).resolve().parent
STATUSES = ("done", "partial", "not done", "not applicable", "**not met**", "a judgement")


def test_every_test_the_readme_names_exists() -> None:
    assert_cited_tests_exist(README, TESTS, at_least=25)


def test_every_done_row_names_a_test() -> None:
    heading = "## Every requirement of seed 002, line by line"
    assert_done_rows_cite_tests(README, TESTS, heading, rows=28, statuses=STATUSES)
