"""Checks of an example's README: its ``pycon`` blocks run as doctests, the tests its
requirement table cites exist, and no row is marked done without one.

Each fenced block marked ```` ```pycon ```` is one doctest: ``>>>`` lines run in order, the
lines after them are the expected output (``...`` matches anything, whitespace is
normalised). Blocks share one namespace, top to bottom, as a reader would type them.

A test reference is ```test_x.py::test_name``` (a file of the example's ``tests/``) or
```tests/.../test_x.py::test_name``` / ```examples/...``` (from the repository root); a bare
```::test_name``` after one means the same file.
"""

from __future__ import annotations

import ast
import doctest
import io
import re
from pathlib import Path

__all__ = [
    "assert_cited_tests_exist",
    "assert_done_rows_cite_tests",
    "missing_test_references",
    "requirement_rows",
    "run_readme_doctests",
]

ROOT = Path(__file__).resolve().parents[1]
_REF = re.compile(r"`((?:tests/|examples/)?[\w/]*test_\w+\.py)?(?:::(\w+))?`")

_BLOCK = re.compile(r"^```pycon\n(.*?)^```", re.S | re.M)


def run_readme_doctests(readme: Path) -> int:
    """Run every ``pycon`` block of ``readme`` in the current directory; the number of
    examples run. Fails (AssertionError with doctest's report) on the first failing block,
    and when the README has no block at all (a test that checks nothing must not pass)."""
    text = readme.read_text(encoding="utf-8")
    blocks = [(m.group(1), text.count("\n", 0, m.start()) + 1) for m in _BLOCK.finditer(text)]
    assert blocks, f"{readme} has no ```pycon block"
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    globs: dict[str, object] = {"__name__": "__readme__"}
    ran = 0
    for number, (block, line) in enumerate(blocks, 1):
        test = parser.get_doctest(block, globs, f"{readme.name} block {number}", str(readme), line)
        report = io.StringIO()
        result = runner.run(test, out=report.write, clear_globs=False)
        assert result.failed == 0, f"{readme}:{line}: block {number} failed:\n{report.getvalue()}"
        ran += result.attempted
    return ran


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    }


def references(line: str, tests_dir: Path) -> list[tuple[Path, str | None]]:
    """The tests one line of a README cites: (file, test name or None for a whole file)."""
    found: list[tuple[Path, str | None]] = []
    current: Path | None = None
    for path, name in _REF.findall(line):
        if path:
            current = ROOT / path if path.startswith(("tests/", "examples/")) else tests_dir / path
        if current is not None and (path or name):
            found.append((current, name or None))
    return found


def missing_test_references(readme: Path, tests_dir: Path) -> tuple[int, list[str]]:
    """How many test references ``readme`` makes, and those naming no existing test."""
    count = 0
    missing = []
    for line in readme.read_text(encoding="utf-8").splitlines():
        for file, name in references(line, tests_dir):
            count += 1
            if not file.is_file():
                missing.append(str(file.relative_to(ROOT)))
            elif name is not None and name not in _test_names(file):
                missing.append(f"{file.relative_to(ROOT)}::{name}")
    return count, missing


def requirement_rows(readme: Path, heading: str) -> list[list[str]]:
    """The cells of each row of the table under ``heading`` (the line-by-line list)."""
    text = readme.read_text(encoding="utf-8")
    start = text.index(heading)
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not line.startswith("|---") and not line.startswith("| #"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows


def assert_cited_tests_exist(readme: Path, tests_dir: Path, *, at_least: int) -> None:
    """``readme`` cites at least ``at_least`` tests, and each names one that exists."""
    count, missing = missing_test_references(readme, tests_dir)
    assert count >= at_least
    assert missing == []


def assert_done_rows_cite_tests(
    readme: Path,
    tests_dir: Path,
    heading: str,
    *,
    rows: int,
    statuses: tuple[str, ...],
    covered_by_all: str | None = None,
) -> None:
    """The table under ``heading`` lists requirements 1..N (N >= ``rows``, numbered without a
    gap), each row's status starts with one of ``statuses``, and a row marked done cites a
    test that exists (or says ``covered_by_all``: proved by every test of a section above)."""
    found = requirement_rows(readme, heading)
    assert len(found) >= rows
    assert [r[0] for r in found] == [str(n) for n in range(1, len(found) + 1)]
    for number, _requirement, status, proof in found:
        assert status.startswith(statuses), (number, status)
        if status.startswith("done") and not (covered_by_all and proof.startswith(covered_by_all)):
            assert references(proof, tests_dir), f"row {number} is done without a test"
