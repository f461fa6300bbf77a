"""Repository-wide pytest rule, for ``tests/`` and every ``examples/*/tests`` alike: CI can
never pass by skipping the real thing.

Tests that need a system part (a Secret Service, Chromium, POSIX process semantics, root to
mount a filesystem) carry a marker. Locally they skip with the reason when the part is
missing; under ``CI=true`` such a skip is turned into a failure.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator

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


# --- PostgreSQL (tests/pgserver.py), for tests/ and examples/*/tests alike ----------------


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A real PostgreSQL server for the session (initdb + pg_ctl in a temp dir, Unix socket):
    the URL of its ``postgres`` database. Tests using it carry the ``postgres`` marker."""
    from tests import pgserver

    with pgserver.running() as url:
        if url is None:
            pytest.skip(
                "no PostgreSQL server installed (Debian's postgresql package: `make test` "
                "installs it; or set BASTION_TEST_PG_URL)"
            )
        yield url


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A URL whose ``search_path`` is a fresh schema of its own, dropped after the test."""
    from tests import pgserver

    schema = pgserver.new_schema(pg_admin_url)
    try:
        yield pgserver.with_schema(pg_admin_url, schema)
    finally:
        pgserver.drop_schema(pg_admin_url, schema)
