"""The migration engine against real database files: bad histories, failures, backups, dry runs,
baselines. Namespaces here are small and built inline; the realistic one is in
``migrations_support``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from bastion.domains import core_namespace
from bastion.domains.events import EventsRepo, event_sink
from bastion.errors import (
    BaselineMismatch,
    MigrationCheckFailed,
    MigrationChecksumMismatch,
    MigrationError,
    MigrationFailed,
    MigrationGap,
    MigrationOutOfOrder,
    MigrationUnknown,
)
from bastion.store import Database, WriteTx
from bastion.store.crypt import DatabaseKey
from bastion.store.crypt.cipher import connect
from bastion.store.migrations import (
    Migration,
    MigrationKind,
    Migrator,
    Namespace,
    checksum_text,
    split_statements,
)
from bastion.store.wal import checkpoint
from tests.store.keyed import OpenDatabase
from tests.store.migrations_support import app_namespace, content_hash, db, verify_sqlite_file

__all__ = ["db"]  # the fixture, re-exported for pytest


@pytest.fixture
def any_db(open_engine: OpenDatabase, tmp_path: Path) -> Iterator[Database]:
    """A fresh database on the run's engine: the history tests marked ``engine_rerun`` run
    once more on PostgreSQL (backups, restores and rebuilds are SQLite's and use ``db``)."""
    database = open_engine(tmp_path / "any.db")
    yield database
    database.close()


M1 = Migration.sql("0001_a", "CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT);")
M2 = Migration.sql(
    "0002_b", "CREATE TABLE b (id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES a (id));"
)
M3 = Migration.sql("0003_c", "CREATE TABLE c (id INTEGER PRIMARY KEY);")
M4 = Migration.sql("0004_d", "CREATE TABLE d (id INTEGER PRIMARY KEY);")


def ns(*migrations: Migration, name: str = "t") -> Namespace:
    return Namespace(name, migrations)


def history(db: Database, name: str = "t") -> list[tuple[str, str]]:
    return db.query(
        "SELECT id, kind FROM schema_migrations WHERE namespace = ? ORDER BY rowid", (name,)
    )


# --- declaring -----------------------------------------------------------------------------


def test_ids_numbers_and_names_are_validated() -> None:
    with pytest.raises(ValueError, match="must look like 0001_name"):
        Migration.sql("1_init", "SELECT 1")
    with pytest.raises(ValueError, match="share the number 0001"):
        Namespace("t", [M1, Migration.sql("0001_other", "SELECT 1")])
    with pytest.raises(ValueError, match="lowercase"):
        Namespace("Bad-Name", [])
    with pytest.raises(ValueError, match="unknown directive"):
        Migration.sql("0001_x", "-- bastion: no-transactions\nSELECT 1;")


def test_namespace_sorts_by_number_and_loads_package_files(tmp_path: Path) -> None:
    assert ns(M3, M1, M2).ids == ("0001_a", "0002_b", "0003_c")
    core = core_namespace()
    assert core.ids[0] == "0001_core"
    assert core.migrations[0].origin == "bastion.domains.migrations/0001_core.sql"
    (tmp_path / "0001_init.sql").write_text("CREATE TABLE x (id INTEGER);")
    (tmp_path / "notes.sql").write_text("-- not a migration")
    with pytest.raises(ValueError, match=r"NNNN_name\.sql"):
        Namespace.from_directory("d", tmp_path)


def test_checksum_normalizes_line_endings_only() -> None:
    assert checksum_text("a\r\nb\r\n") == checksum_text("a\nb\n") == checksum_text("a\rb\r")
    assert checksum_text("a\nb\n") != checksum_text("a\nb \n")
    py = Migration.python("0002_fill", lambda tx: None, source="v1")
    assert py.kind is MigrationKind.PYTHON
    assert py.checksum == checksum_text("v1")


def test_statements_split_on_complete_statements_only() -> None:
    sql = """
    CREATE TABLE t (x TEXT DEFAULT 'a;b');  -- a comment; with a semicolon
    CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET x = 'c;d'; SELECT 1; END;
    /* trailing */
    """
    parts = split_statements(sql)
    assert len(parts) == 2
    assert parts[0].startswith("CREATE TABLE")
    assert parts[0].endswith("'a;b');")
    assert "CREATE TRIGGER" in parts[1]
    assert parts[1].endswith("SELECT 1; END;")


# --- applying ------------------------------------------------------------------------------


@pytest.mark.encrypted_rerun
@pytest.mark.engine_rerun
def test_each_migration_is_recorded_with_checksum_duration_and_predecessor(
    any_db: Database, store_engine: str
) -> None:
    db = any_db
    report = Migrator(db).migrate([ns(M1, M2)])
    assert [a.id for a in report.applied] == ["0001_a", "0002_b"]
    rows = db.query(
        "SELECT id, checksum, duration_ms >= 0, bastion_version != '', previous_id "
        "FROM schema_migrations ORDER BY id"
    )
    # (PostgreSQL's comparisons are booleans; True == 1 as SQLite's are.)
    assert rows == [("0001_a", M1.checksum, 1, 1, None), ("0002_b", M2.checksum, 1, 1, "0001_a")]
    # PostgreSQL's catalog lists the primary keys' own indexes too.
    pkeys = ("index:a_pkey", "index:b_pkey") if store_engine == "postgresql" else ()
    assert report.changes.added == (*pkeys, "table:a", "table:b")
    again = Migrator(db).migrate([ns(M1, M2)])
    assert again.applied == ()
    assert again.backups == ()


@pytest.mark.engine_rerun
def test_status_reports_applied_pending_and_last(any_db: Database) -> None:
    db = any_db
    Migrator(db).migrate([ns(M1)])
    (state,) = Migrator(db).status([ns(M1, M2, M3)])
    assert state.applied == ("0001_a",)
    assert state.pending == ("0002_b", "0003_c")
    assert state.last_applied == "0001_a"
    assert state.last_applied_at is not None
    assert state.problem is None


# --- bad histories -------------------------------------------------------------------------


@pytest.mark.engine_rerun
def test_unknown_applied_migration_means_database_newer_than_code(any_db: Database) -> None:
    db = any_db
    Migrator(db).migrate([ns(M1, M2, M3)])
    with pytest.raises(MigrationUnknown, match=r"t/0003_c.*newer") as err:
        Migrator(db).migrate([ns(M1, M2)])
    assert err.value.details["ids"] == ["0003_c"]
    (state,) = Migrator(db).status([ns(M1, M2)])
    assert state.problem is not None
    assert state.problem["code"] == "migration_unknown"


@pytest.mark.engine_rerun
def test_edited_migration_is_refused_with_file_and_both_checksums(
    any_db: Database, tmp_path: Path
) -> None:
    db = any_db
    mdir = tmp_path / "migs"
    mdir.mkdir()
    (mdir / "0001_a.sql").write_text("CREATE TABLE a (id INTEGER PRIMARY KEY);\n")
    Migrator(db).migrate([Namespace.from_directory("t", mdir)])
    old = checksum_text("CREATE TABLE a (id INTEGER PRIMARY KEY);\n")
    # Line endings alone are not an edit.
    (mdir / "0001_a.sql").write_bytes(b"CREATE TABLE a (id INTEGER PRIMARY KEY);\r\n")
    Migrator(db).check([Namespace.from_directory("t", mdir)])
    (mdir / "0001_a.sql").write_text("CREATE TABLE a (id INTEGER PRIMARY KEY, extra TEXT);\n")
    edited = Namespace.from_directory("t", mdir)
    with pytest.raises(MigrationChecksumMismatch) as err:
        Migrator(db).migrate([edited])
    message = str(err.value)
    assert str(mdir / "0001_a.sql") in message
    assert old in message
    assert edited.migrations[0].checksum in message
    assert "--accept-edited t/0001_a" in err.value.hint


def test_accepting_an_edit_records_the_new_checksum_and_an_event(db: Database) -> None:
    core = core_namespace()
    app_v1 = ns(Migration.sql("0001_a", "CREATE TABLE a (id INTEGER PRIMARY KEY);"), name="app")
    Migrator(db, on_event=event_sink).migrate([core, app_v1])
    app_v2 = ns(
        Migration.sql("0001_a", "CREATE TABLE a (id INTEGER PRIMARY KEY); -- reviewed"), name="app"
    )
    report = Migrator(db, on_event=event_sink).migrate([core, app_v2], accept_edited=["app/0001_a"])
    assert report.accepted_edits == ("app/0001_a",)
    stored = db.scalar(
        "SELECT checksum FROM schema_migrations WHERE namespace = 'app' AND id = '0001_a'"
    )
    assert stored == app_v2.migrations[0].checksum
    (event,) = EventsRepo(db).query(kind="migration.edit_accepted").items
    assert event.subject == "app/0001_a"
    assert event.data is not None
    assert event.data["new_checksum"] == stored
    Migrator(db).check([core, app_v2])  # accepted: no longer an error


@pytest.mark.engine_rerun
def test_gap_in_applied_history_is_refused(any_db: Database) -> None:
    db = any_db
    Migrator(db).migrate([ns(M1, M2, M3)])
    # A hand-edited (or partly restored) history: 0002 vanished, 0003 records it as predecessor.
    db.write(lambda tx: tx.execute("DELETE FROM schema_migrations WHERE id = '0002_b'"))
    with pytest.raises(MigrationGap, match=r"t/0002_b .*never applied.*0003_c"):
        Migrator(db).migrate([ns(M1, M2, M3)])


@pytest.mark.engine_rerun
def test_pending_migration_older_than_an_applied_one_is_out_of_order(any_db: Database) -> None:
    db = any_db
    Migrator(db).migrate([ns(M1, M3)])
    with pytest.raises(MigrationOutOfOrder, match=r"t/0002_b .*sorts before 0003_c") as err:
        Migrator(db).migrate([ns(M1, M2, M3)])
    assert "Renumber" in err.value.hint
    assert "b" not in db.dialect.table_names(db)


def test_bad_history_refuses_home_open_and_shows_in_status(home: object) -> None:
    from bastion.app import Home
    from bastion.config import Config

    assert isinstance(home, Config)
    Home.init(home).close()
    raw = apsw.Connection(str(home.db_path))
    raw.execute(
        "INSERT INTO schema_migrations (namespace, id, checksum, applied_at, duration_ms, "
        "bastion_version) VALUES ('core', '0002_future', 'x', 0, 0, '9.9')"
    )
    raw.close()
    with pytest.raises(MigrationUnknown):
        Home.open(home)
    with Home.open(home, migrate=False) as opened:
        (state,) = [s for s in opened.status()["migrations"] if s["problem"] is not None]
    assert state["namespace"] == "core"
    assert state["problem"]["code"] == "migration_unknown"


# --- failures, backups, restore ------------------------------------------------------------


@pytest.mark.encrypted_rerun
def test_failing_migration_leaves_content_identical_and_a_verified_backup(
    db: Database, tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    Migrator(db).migrate([ns(M1, M2)])
    db.write(lambda tx: tx.execute("INSERT INTO a (id, v) VALUES (1, 'keep')"))
    before = content_hash(db)
    bad = Migration.sql(
        "0003_half",
        "CREATE TABLE half (id INTEGER);\nINSERT INTO a (id, v) VALUES (2, 'x');\nINSERT INTO missing VALUES (1);\n",
    )
    backups = tmp_path / "backups"
    with pytest.raises(MigrationFailed) as err:
        Migrator(db, backups_dir=backups).migrate([ns(M1, M2, bad)])
    assert content_hash(db) == before
    (backup,) = backups.glob("pre-migrate-t-0003_half-*.db")
    assert str(backup) in str(err.value)
    assert "missing" in str(err.value)
    assert err.value.details["restored"] is False  # the transaction rollback was enough
    assert verify_sqlite_file(backup, db_key) == ["ok"]
    assert os.stat(backup).st_mode & 0o777 == 0o600
    raw = connect(str(backup), flags=apsw.SQLITE_OPEN_READONLY, key=db_key)
    assert raw.execute("SELECT v FROM a").fetchall() == [("keep",)]
    raw.close()
    if db_key is not None:  # an encrypted database's pre-migration backup is encrypted
        assert b"keep" not in backup.read_bytes()
        assert b"SQLite format 3" not in backup.read_bytes()
    # Made by the store's one backup routine: a manifest, deep-verifiable like any backup.
    from bastion.store.backup import verify_backup

    info = verify_backup(backup, deep=True, key=db_key)
    assert info.verified, info.problem
    assert info.manifest is not None
    assert info.manifest["row_counts"]["a"] == 1


@pytest.mark.engine_rerun
def test_failing_python_migration_rolls_back_its_earlier_writes(
    any_db: Database, store_engine: str
) -> None:
    db = any_db
    Migrator(db).migrate([ns(M1)])
    if store_engine == "postgresql":  # no file to hash: the rows and the history say it
        before = (db.query("SELECT * FROM a"), Migrator(db).history("t"))
    else:
        before = content_hash(db)

    def fill_then_fail(tx: WriteTx) -> None:
        tx.execute("INSERT INTO a (id, v) VALUES (1, 'one')")
        raise RuntimeError("backfill broke on row 2")

    with pytest.raises(MigrationFailed, match="backfill broke on row 2"):
        Migrator(db).migrate([ns(M1, Migration.python("0002_fill", fill_then_fail))])
    if store_engine == "postgresql":
        assert (db.query("SELECT * FROM a"), Migrator(db).history("t")) == before
    else:
        assert content_hash(db) == before


@pytest.mark.encrypted_rerun
def test_non_transactional_failure_after_a_change_restores_the_backup(
    db: Database, tmp_path: Path
) -> None:
    Migrator(db).migrate([ns(M1)])
    db.write(lambda tx: tx.execute("INSERT INTO a (v) VALUES ('keep')"))
    before = content_hash(db)
    bad = Migration.sql(
        "0002_outside",
        "-- bastion: no-transaction\nCREATE TABLE committed_alone (x);\nCREATE TABLE oops (;\n",
    )
    assert not bad.transactional
    with pytest.raises(MigrationFailed, match="restored from") as err:
        Migrator(db, backups_dir=tmp_path / "b").migrate([ns(M1, bad)])
    assert err.value.details["restored"] is True
    assert content_hash(db) == before
    # The live database is still usable through the same Database object.
    db.write(lambda tx: tx.execute("INSERT INTO a (v) VALUES ('after')"))
    assert db.scalar("PRAGMA journal_mode") == "wal"
    assert db.query("SELECT v FROM a ORDER BY id") == [("keep",), ("after",)]


def test_violations_found_after_migrating_name_table_and_rowid_and_restore(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    # Legacy data written with enforcement off (as apps without foreign_keys=ON did).
    raw = apsw.Connection(str(path))
    raw.execute(
        "CREATE TABLE p (id INTEGER PRIMARY KEY); CREATE TABLE c (id INTEGER PRIMARY KEY, p_id INTEGER REFERENCES p (id));"
    )
    raw.execute("INSERT INTO c (id, p_id) VALUES (7, 42)")
    raw.close()
    db = Database.open(path)
    try:
        before = content_hash(db)
        with pytest.raises(MigrationCheckFailed, match=r"c rowid 7 -> p") as err:
            Migrator(db, backups_dir=tmp_path / "b").migrate(
                [ns(Migration.sql("0001_x", "CREATE TABLE x (id INTEGER);"))]
            )
        assert "restored from" in str(err.value)
        assert content_hash(db) == before
    finally:
        db.close()


@pytest.mark.encrypted_rerun
def test_rebuild_leaving_fk_violations_is_rolled_back(db: Database) -> None:
    Migrator(db).migrate([app_namespace(3)])
    db.write(lambda tx: tx.execute("INSERT INTO runs (id, bot_id, status) VALUES (1, 5, 'done')"))
    before = content_hash(db)
    no_policy = Migration.rebuild(
        "0004_runs_fk",
        "runs",
        "CREATE TABLE runs (id INTEGER PRIMARY KEY, bot_id INTEGER REFERENCES bots (id), status TEXT NOT NULL)",
    )
    with pytest.raises(MigrationCheckFailed, match=r"runs rowid 1 -> bots"):
        Migrator(db).migrate([Namespace("app", [*app_namespace(3).migrations, no_policy])])
    assert content_hash(db) == before
    assert db.write(lambda tx: tx.scalar("PRAGMA foreign_keys")) == 1


@pytest.mark.encrypted_rerun
def test_backups_are_rotated_per_namespace(db: Database, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    migs = [Migration.sql(f"{i:04d}_m{i}", f"CREATE TABLE m{i} (id INTEGER);") for i in range(1, 6)]
    (backups).mkdir(mode=0o700)
    (backups / "pre-migrate-other-0001_x-20000101T000000000000Z.db").write_bytes(b"")
    for upto in range(1, 6):
        Migrator(db, backups_dir=backups, keep=2).migrate([Namespace("t", migs[:upto])])
    names = sorted(p.name for p in backups.glob("pre-migrate-t-*.db"))
    # The first run had an empty database (nothing to save); then one per run, 2 kept.
    assert [n.split("-")[3] for n in names] == ["0004_m4", "0005_m5"]
    assert (backups / "pre-migrate-other-0001_x-20000101T000000000000Z.db").exists()


@pytest.mark.encrypted_rerun
def test_dry_run_leaves_file_bytes_and_mtime_unchanged(db: Database) -> None:
    Migrator(db).migrate([ns(M1)])
    db.write(lambda tx: tx.execute("INSERT INTO a (v) VALUES ('x')"))
    checkpoint(db, "TRUNCATE")
    path = Path(db.path)
    bytes_before, mtime_before = path.read_bytes(), path.stat().st_mtime_ns
    wal = Path(f"{path}-wal")
    wal_before = wal.stat().st_size if wal.exists() else 0
    report = Migrator(db).migrate([ns(M1, M2, M3)], dry_run=True)
    assert report.dry_run
    assert [a.id for a in report.applied] == ["0002_b", "0003_c"]
    assert report.changes.added == ("table:b", "table:c")
    assert report.states[0].pending == ()
    assert path.read_bytes() == bytes_before
    assert path.stat().st_mtime_ns == mtime_before
    assert (wal.stat().st_size if wal.exists() else 0) == wal_before
    (state,) = Migrator(db).status([ns(M1, M2, M3)])
    assert state.pending == ("0002_b", "0003_c")
    assert not list(path.parent.glob(".bastion-dry-run-*"))  # the copy is gone


@pytest.mark.encrypted_rerun
def test_dry_run_reports_a_failure_without_touching_the_live_file(db: Database) -> None:
    Migrator(db).migrate([ns(M1)])
    checkpoint(db, "TRUNCATE")
    before = Path(db.path).read_bytes()
    with pytest.raises(MigrationFailed):
        Migrator(db).migrate(
            [ns(M1, Migration.sql("0002_bad", "CREATE TABLE a (id INTEGER);"))], dry_run=True
        )
    assert Path(db.path).read_bytes() == before


# --- baseline ------------------------------------------------------------------------------


def _legacy(db: Database, *, with_index: bool = True, with_messages: bool = True) -> None:
    """A database an app created before it had migrations (same DDL, different layout)."""

    def create(tx: WriteTx) -> None:
        tx.execute(
            "CREATE TABLE bots (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at REAL NOT NULL)"
        )
        tx.execute(
            "create table runs (id integer primary key, bot_id integer, status text not null)"
        )
        if with_index:
            tx.execute("CREATE INDEX runs_bot ON runs(bot_id)")
        if with_messages:
            tx.execute(
                'CREATE TABLE "messages" (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, body TEXT NOT NULL)'
            )
            tx.execute("CREATE INDEX messages_run ON messages (run_id)")
        tx.execute("INSERT INTO bots (name, created_at) VALUES ('Ada', 1.0)")

    db.write(create)


def test_baseline_adopts_a_matching_database_then_migrates_the_rest(db: Database) -> None:
    _legacy(db)
    result = Migrator(db).baseline(app_namespace(), "0002_messages")
    assert result.recorded == ("0001_init", "0002_messages")
    assert history(db, "app") == [("0001_init", "baseline"), ("0002_messages", "baseline")]
    report = Migrator(db).migrate([app_namespace()])
    assert next(a.id for a in report.applied) == "0003_bot_slugs"
    assert db.query("SELECT name, slug FROM bots") == [("Ada", "ada")]


def test_baseline_refuses_a_schema_that_does_not_match(db: Database) -> None:
    _legacy(db, with_index=False)
    before = content_hash(db)
    with pytest.raises(BaselineMismatch, match="missing index:runs_bot"):
        Migrator(db).baseline(app_namespace(), "0002_messages")
    with pytest.raises(
        BaselineMismatch, match="later migrations: index:messages_run, table:messages"
    ):
        Migrator(db).baseline(app_namespace(), "0001_init")
    assert content_hash(db) == before  # not even the history table was created


def test_baseline_refuses_when_history_exists(db: Database) -> None:
    Migrator(db).migrate([app_namespace(1)])
    with pytest.raises(MigrationError, match="already has a migration history"):
        Migrator(db).baseline(app_namespace(), "0001_init")
