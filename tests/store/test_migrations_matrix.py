"""Migration matrix: from every prefix of a namespace, upgrading converges on a fresh install.

For ``core`` and for the app namespace of ``migrations_support`` (backfill, two rebuilds that
add FOREIGN KEYs to legacy data, a non-transactional step), a database is migrated to each
prefix, filled with data valid at that point (including orphans the later FK migrations must
normalize), upgraded to the end, and compared with a fresh install: same schema fingerprint,
data preserved.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.domains import core_namespace
from bastion.domains.logs import LogRecord, LogsRepo
from bastion.domains.settings import SettingsRepo
from bastion.store import Database
from bastion.store.migrations import Migrator, Namespace
from bastion.store.schema import fingerprint, schema_objects
from tests.store.keyed import OpenDatabase
from tests.store.migrations_support import APP_MIGRATIONS, app_namespace, verify_sqlite_file

pytestmark = pytest.mark.encrypted_rerun


def _fresh_fingerprint(open_database: OpenDatabase, tmp_path: Path, ns: Namespace) -> str:
    db = open_database(tmp_path / f"fresh-{ns.name}.db")
    try:
        Migrator(db).migrate([ns])
        return fingerprint(schema_objects(db))
    finally:
        db.close()


def _seed_app(db: Database, prefix: int) -> None:
    """Rows valid for the app schema after ``prefix`` migrations, with legacy orphans."""

    def fill(tx: object) -> None:
        from bastion.store import WriteTx

        assert isinstance(tx, WriteTx)
        if prefix >= 1:
            tx.execute(
                "INSERT INTO bots (id, name, created_at) VALUES (1, 'Ada Bot', 1.0), (2, 'Bob', 2.0)"
            )
            if prefix >= 3:  # the app sets slugs itself once the column exists
                tx.execute("UPDATE bots SET slug = lower(replace(name, ' ', '-'))")
            if prefix < 4:
                # Legacy rows: a run of a bot that no longer exists, a run with empty status.
                tx.execute(
                    "INSERT INTO runs (id, bot_id, status) VALUES (10, 1, 'done'), (11, 99, ''), (12, 2, 'running')"
                )
            else:
                tx.execute(
                    "INSERT INTO runs (id, bot_id, status) VALUES (10, 1, 'done'), (11, NULL, 'queued'), (12, 2, 'running')"
                )
        if prefix >= 2:
            tx.execute(
                "INSERT INTO messages (id, run_id, body) VALUES (100, 10, 'hello'), (101, 12, 'world')"
            )
            if prefix < 5:
                tx.execute("INSERT INTO messages (id, run_id, body) VALUES (102, 77, 'orphan')")

    db.write(fill)  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", range(len(APP_MIGRATIONS) + 1))
def test_app_namespace_upgrade_from_every_prefix_matches_fresh_install(
    open_database: OpenDatabase, tmp_path: Path, prefix: int
) -> None:
    expected = _fresh_fingerprint(open_database, tmp_path, app_namespace())
    db = open_database(tmp_path / "app.db")
    try:
        Migrator(db).migrate([app_namespace(prefix)])
        _seed_app(db, prefix)
        report = Migrator(db, backups_dir=tmp_path / "backups").migrate([app_namespace()])

        assert [a.id for a in report.applied] == [m.id for m in APP_MIGRATIONS[prefix:]]
        assert fingerprint(schema_objects(db)) == expected
        state = Migrator(db).status([app_namespace()])[0]
        assert state.pending == ()
        assert state.problem is None
        if prefix >= 1:
            assert db.query("SELECT id, name, slug FROM bots ORDER BY id") == [
                (1, "Ada Bot", "ada-bot"),
                (2, "Bob", "bob"),
            ]
            runs = db.query("SELECT id, bot_id, status FROM runs ORDER BY id")
            assert runs == [(10, 1, "done"), (11, None, "queued"), (12, 2, "running")]
            orphans = report.orphans
            if prefix < 4:
                assert orphans["runs.bot_id->bots.id"] == 1
        if prefix >= 2:
            assert db.query("SELECT id, run_id, body FROM messages ORDER BY id") == [
                (100, 10, "hello"),
                (101, 12, "world"),
            ]
            if prefix < 5:
                assert report.orphans["messages.run_id->runs.id"] == 1
        assert db.query("PRAGMA foreign_key_check") == []
        # A pre-migration backup of every non-empty database with pending migrations,
        # verified and self-contained.
        if 1 <= prefix < len(APP_MIGRATIONS):
            (backup,) = report.backups
            assert backup.name.startswith(f"pre-migrate-app-{APP_MIGRATIONS[prefix].id}-")
            assert verify_sqlite_file(backup, db.key) == ["ok"]
    finally:
        db.close()


@pytest.mark.parametrize("prefix", range(len(core_namespace().migrations) + 1))
def test_core_namespace_upgrade_from_every_prefix_matches_fresh_install(
    open_database: OpenDatabase, tmp_path: Path, prefix: int
) -> None:
    core = core_namespace()
    expected = _fresh_fingerprint(open_database, tmp_path, core)
    db = open_database(tmp_path / "bastion.db")
    try:
        Migrator(db).migrate([Namespace("core", core.migrations[:prefix])])
        if prefix >= 1:
            SettingsRepo(db).set("ui.theme", "dark")
            LogsRepo(db).insert_batch([LogRecord(1.0, "info", "svc", "stdout", "kept")])
        Migrator(db, backups_dir=tmp_path / "backups").migrate([core])
        assert fingerprint(schema_objects(db)) == expected
        if prefix >= 1:
            assert SettingsRepo(db).get("ui.theme") == "dark"
            assert [r.message for r in LogsRepo(db).query()] == ["kept"]
    finally:
        db.close()


def test_rebuild_keeps_fingerprint_equal_despite_renamed_table_text(
    open_database: OpenDatabase, tmp_path: Path
) -> None:
    """ALTER TABLE ... RENAME rewrites the stored CREATE text with quotes; the fingerprint's
    normal form must still equal a fresh install's, and the raw text indeed differs."""
    db = open_database(tmp_path / "a.db")
    try:
        Migrator(db).migrate([app_namespace(3)])
        Migrator(db).migrate([app_namespace(4)])
        raw = db.scalar("SELECT sql FROM sqlite_master WHERE name = 'runs'")
        assert raw.startswith('CREATE TABLE "runs"')
        assert fingerprint(schema_objects(db)) == _fresh_fingerprint(
            open_database, tmp_path, app_namespace(4)
        )
    finally:
        db.close()
