"""Fixtures for the domain tests: the global and a profile database, each opened (checked,
migrated) the one way pupitre opens a database, in a fresh data directory, and nothing else:
each domain's repo is tested on its own tables, without the app's orchestration."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.store import Database
from examples.pupitre import migrations
from examples.pupitre.app import open_database


def _open(root: Path, name: str, global_db: bool) -> Database:
    namespace = migrations.global_namespace() if global_db else migrations.profile_namespace()
    root.mkdir(parents=True, exist_ok=True)
    return open_database(
        root / f"{name}.db",
        namespace,
        backups_dir=root / "backups" / name,
        quarantine_dir=root / "quarantine" / name,
    )


@pytest.fixture
def global_db(tmp_path: Path) -> Iterator[Database]:
    db = _open(tmp_path, "global", True)
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def profile_db(tmp_path: Path) -> Iterator[Database]:
    db = _open(tmp_path / "profiles", "main", False)
    try:
        yield db
    finally:
        db.close()
