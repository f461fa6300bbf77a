"""Repository-wide pytest rule, for ``tests/`` and every ``examples/*/tests`` alike: CI can
never pass by skipping the real thing.

Tests that need a system part (a Secret Service, Chromium, POSIX process semantics, root to
mount a filesystem) carry a marker. Locally they skip with the reason when the part is
missing; under ``CI=true`` such a skip is turned into a failure.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

SYSTEM_MARKERS = (
    "keychain",
    "browser",
    "posix",
    "system_tool",
    "dist",
    "node",
    "root",
    "postgres",
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, None, None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not (report.skipped and _in_ci()):
        return
    if hasattr(report, "wasxfail"):
        return
    needed = [m for m in SYSTEM_MARKERS if item.get_closest_marker(m) is not None]
    if needed:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (
            f"CI=true: a test needing {', '.join(needed)} was skipped ({reason}); "
            "CI must run it against the real component."
        )
