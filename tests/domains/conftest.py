"""A migrated ``core`` database for the domain tests."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest

from bastion.domains import core_namespace
from bastion.domains.events import event_sink
from bastion.store import Database
from bastion.store.migrations import Migrator


@pytest.fixture
def db(tmp_path: Path) -> Generator[Database, None, None]:
    database = Database.open(tmp_path / "bastion.db")
    Migrator(database, on_event=event_sink).migrate([core_namespace()])
    yield database
    database.close()
