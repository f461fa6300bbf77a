"""The README holds: every test it names exists, and its line-by-line list of the seed marks
nothing done without a test that proves it."""

from __future__ import annotations

from pathlib import Path

from tests.example_readme import missing_test_references, references, requirement_rows

README = Path(__file__).resolve().parents[1] / "README.md"
TESTS = Path(__file__).resolve().parent


def test_every_test_the_readme_names_exists() -> None:
    count, missing = missing_test_references(README, TESTS)
    assert count >= 25
    assert missing == []


def test_every_done_row_names_a_test() -> None:
    rows = requirement_rows(README, "## Every requirement of seed 002, line by line")
    assert [r[0] for r in rows] == [str(n) for n in range(1, 25 + 1)]
    for number, _requirement, status, proof in rows:
        assert status.startswith(
            ("done", "partial", "not done", "not applicable", "**not met**")
        ) or ("no test" in status), number
        if status.startswith("done"):
            assert references(proof, TESTS), f"row {number} is done without a test"
