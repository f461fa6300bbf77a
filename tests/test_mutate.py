"""`make mutate` keeps pointing at real modules and tests, and its report covers them all.

The mutation run itself is too slow for CI on two cores (minutes per module); this checks the
parts that could rot unnoticed between runs: a module or test file renamed, an explanation of
a survivor that names a module no longer mutated, a report that lost a module.
"""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _mutate_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutate_script", ROOT / "scripts" / "mutate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_every_mutated_module_and_its_tests_exist() -> None:
    modules = _mutate_module().MODULES
    assert modules, "no module is mutated"
    for module, tests in modules.items():
        assert (ROOT / "src" / "bastion" / module).is_file(), module
        assert tests, f"{module} has no tests to kill its mutants"
        for test in tests:
            assert (ROOT / test).is_file(), f"{module}: {test} is gone"


def test_explanations_name_mutated_modules_and_say_why() -> None:
    path = ROOT / "docs" / "mutation-equivalents.toml"
    modules = _mutate_module().MODULES
    for module, entries in tomllib.loads(path.read_text(encoding="utf-8")).items():
        assert module in modules, f"{module} is explained but not mutated"
        for entry in entries:
            assert {"function", "removed", "added", "why"} <= set(entry), entry
            assert len(str(entry["why"]).split()) >= 5, f"say why: {entry}"


def test_the_report_lists_every_module_and_matches_the_stored_results() -> None:
    """Every module of MODULES has a row (with figures, or saying it has not run yet), and the
    committed report is what the stored results and today's explanations render to: an
    explanation added without regenerating the report, or a hand edit, fails here."""
    mutate = _mutate_module()
    report = (ROOT / "docs" / "mutation.md").read_text(encoding="utf-8")
    rows = [line for line in report.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(mutate.MODULES)
    results = mutate._load_results()
    for module, row in zip(mutate.MODULES, rows, strict=True):
        assert (mutate.NOT_RUN in row) == (module not in results), row
    assert report == mutate.render(list(results.values()))


def test_every_explanation_still_matches_a_survivor() -> None:
    """An explanation of a mutant a test now kills (or whose line changed) is stale: it would
    silently excuse a future survivor that happens to look the same."""
    mutate = _mutate_module()
    results = mutate._load_results()
    for module, entries in mutate._load_equivalents().items():
        if module not in results:
            continue
        survivors = {
            (s.function, tuple(s.removed), tuple(s.added)) for s in results[module].survivors
        }
        for entry in entries:
            key = (
                entry["function"],
                tuple(str(x) for x in entry["removed"]),
                tuple(str(x) for x in entry["added"]),
            )
            assert key in survivors, f"{module}: no survivor matches {entry}"
