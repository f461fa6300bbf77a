"""Fixtures for the bots example: a data directory in tmp_path and an open store.

The suite runs on both engines: ``env`` is parametrized, and its ``postgresql`` case adds
``BOTERNITY_DATABASE_URL`` naming a fresh schema on the session's PostgreSQL server (the
repository's tests/pgserver.py), so the library, the CLI and ``serve`` subprocesses (which
inherit the environment) all use it. Tests about SQLite's file itself ask for
``sqlite_env``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.bots.store import DATA_DIR_ENV, DATABASE_URL_ENV, MASTER_KEY_ENV, BotStore


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        DATA_DIR_ENV: str(tmp_path / "boternity"),
        MASTER_KEY_ENV: base64.b64encode(os.urandom(32)).decode(),
    }


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The environment the app would run with: data dir and vault master key (and, in the
    PostgreSQL case, the database URL)."""
    values = _env(tmp_path)
    if request.param == "postgresql":
        values[DATABASE_URL_ENV] = str(request.getfixturevalue("pg_url"))
    return values


@pytest.fixture
def sqlite_env(tmp_path: Path) -> dict[str, str]:
    """``env`` for tests about the SQLite file (posture, backups, the file on disk)."""
    return _env(tmp_path)


@pytest.fixture
def store(env: dict[str, str]) -> Iterator[BotStore]:
    with BotStore.open(env=env) as opened:
        yield opened


@pytest.fixture
def sqlite_store(sqlite_env: dict[str, str]) -> Iterator[BotStore]:
    with BotStore.open(env=sqlite_env) as opened:
        yield opened
