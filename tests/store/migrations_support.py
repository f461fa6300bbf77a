"""Shared pieces of the migration tests: a realistic app namespace and content hashing.

``app_namespace()`` is an app's own namespace as seed 000/003/004 would declare it: six
migrations, including a Python data backfill, two table rebuilds that add FOREIGN KEYs to
legacy data (with orphan policies) and a non-transactional step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from pathlib import Path

import apsw
import pytest

from bastion.store import Database, ReadTx, WriteTx
from bastion.store.crypt import DatabaseKey
from bastion.store.crypt.cipher import connect
from bastion.store.migrations import Migration, Namespace, OrphanAction, OrphanPolicy


def _backfill_slugs(tx: WriteTx) -> None:
    tx.execute("ALTER TABLE bots ADD COLUMN slug TEXT")
    tx.execute("UPDATE bots SET slug = lower(replace(name, ' ', '-'))")


APP_MIGRATIONS = [
    Migration.sql(
        "0001_init",
        """
        CREATE TABLE bots (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
        CREATE TABLE runs (id INTEGER PRIMARY KEY, bot_id INTEGER, status TEXT NOT NULL);
        CREATE INDEX runs_bot ON runs (bot_id);
        """,
    ),
    Migration.sql(
        "0002_messages",
        """
        CREATE TABLE messages (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, body TEXT NOT NULL);
        CREATE INDEX messages_run ON messages (run_id);
        """,
    ),
    Migration.python("0003_bot_slugs", _backfill_slugs),
    Migration.rebuild(
        "0004_runs_fk",
        "runs",
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            bot_id INTEGER REFERENCES bots (id) ON DELETE SET NULL,
            status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed'))
        )""",
        select={"id": "id", "bot_id": "bot_id", "status": "coalesce(nullif(status, ''), 'queued')"},
        orphans=[OrphanPolicy("runs", "bot_id", "bots", OrphanAction.SET_NULL)],
    ),
    Migration.rebuild(
        "0005_messages_fk",
        "messages",
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            body TEXT NOT NULL
        )""",
        orphans=[OrphanPolicy("messages", "run_id", "runs", OrphanAction.DELETE)],
    ),
    Migration.sql(
        "0006_compact",
        "-- bastion: no-transaction\nCREATE INDEX IF NOT EXISTS bots_slug ON bots (slug);\nVACUUM;\n",
    ),
]


def app_namespace(upto: int | None = None) -> Namespace:
    return Namespace("app", APP_MIGRATIONS if upto is None else APP_MIGRATIONS[:upto])


def content_hash(source: Database | ReadTx) -> str:
    """SHA-256 of the schema and every row of every table, in rowid order (a logical dump)."""

    def dump(tx: ReadTx) -> str:
        digest = hashlib.sha256()
        for type_, name, sql in tx.query(
            "SELECT type, name, sql FROM sqlite_master ORDER BY type, name"
        ):
            digest.update(f"{type_}|{name}|{sql}\n".encode())
            if type_ == "table" and not name.startswith("sqlite_"):
                for row in tx.query(f'SELECT * FROM "{name}" ORDER BY rowid'):
                    digest.update(repr(row).encode())
        return digest.hexdigest()

    return source.read(dump) if isinstance(source, Database) else dump(source)


def verify_sqlite_file(path: Path, key: DatabaseKey | None = None) -> list[str]:
    """``quick_check`` of a database file through a read-only connection (the file is not
    touched: no journal-mode change, no companions left behind)."""
    conn = connect(
        f"file:{path}?mode=ro", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI, key=key
    )
    try:
        return [r[0] for r in conn.execute("PRAGMA quick_check")]
    finally:
        conn.close()


@pytest.fixture
def db(tmp_path: Path, db_key: DatabaseKey | None) -> Generator[Database, None, None]:
    """``app.db``; encrypted in the ``encrypted`` run of a test marked ``encrypted_rerun``."""
    database = Database.open(tmp_path / "app.db", key=db_key)
    yield database
    database.close()
