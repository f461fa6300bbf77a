"""Workstream 2 + 3 of seed 004: ordered migrations with continuity checks, a deterministic
upgrade path from every older release and from the legacy (pre-history) schema, and foreign
keys added to legacy data with its orphans normalized."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from bastion.errors import (
    BaselineMismatch,
    MigrationChecksumMismatch,
    MigrationGap,
    MigrationOutOfOrder,
    MigrationUnknown,
    ReferenceViolation,
)
from bastion.store import Database, WriteTx
from bastion.store.migrations import Migration, Migrator, Namespace
from bastion.store.schema import fingerprint
from examples.pupitre import migrations
from examples.pupitre.app import Pupitre, open_database

FIXTURES = Path(__file__).parent / "fixtures"
ALL_IDS = [m.id for m in migrations.profile_migrations()]


def _open(path: Path, ns: Namespace, tmp_path: Path) -> Database:
    return open_database(
        path, ns, backups_dir=tmp_path / "backups", quarantine_dir=tmp_path / "quarantine"
    )


def _fresh_fingerprint(tmp_path: Path) -> str:
    db = _open(tmp_path / "fresh.db", migrations.profile_namespace(), tmp_path)
    try:
        return fingerprint(db)
    finally:
        db.close()


def test_fresh_install_applies_every_migration_in_order(tmp_path: Path) -> None:
    db = _open(tmp_path / "p.db", migrations.profile_namespace(), tmp_path)
    try:
        rows = db.query(
            "SELECT id, previous_id FROM schema_migrations WHERE namespace = 'pupitre' "
            "ORDER BY applied_at, id"
        )
        assert [r[0] for r in rows] == ALL_IDS
        assert [r[1] for r in rows] == [None, *ALL_IDS[:-1]]
        assert db.scalar("SELECT count(*) FROM quests") == 4  # 0006 seeded them
    finally:
        db.close()


def _insert_v1_data(db: Database) -> None:
    """Rows valid at every release (0001 columns only)."""

    def unit(tx: WriteTx) -> None:
        tx.execute("INSERT INTO talk_projects (id, title, created_at) VALUES (1, 'T1', 10.0)")
        tx.execute("INSERT INTO talk_projects (id, title, created_at) VALUES (2, 'T2', 5.0)")
        tx.execute(
            "INSERT INTO runs (id, project_id, audio_path, created_at) VALUES (1, 1, 'a.wav', 11.0)"
        )
        tx.execute(
            "INSERT INTO auto_feedback (id, kind, summary, created_at) VALUES (1, 'run', 's', 12.0)"
        )
        tx.execute("INSERT INTO feedback_notes (feedback_id, body) VALUES (1, 'n')")

    db.write(unit)


@pytest.mark.parametrize("upto", ALL_IDS)
def test_upgrade_from_every_release_converges_to_the_fresh_schema(
    tmp_path: Path, upto: str
) -> None:
    """Migration matrix: a database left at each older release, with data, upgrades to the
    same schema fingerprint as a fresh install, and keeps its rows."""
    path = tmp_path / "old.db"
    db = _open(path, migrations.profile_namespace(upto), tmp_path)
    _insert_v1_data(db)
    db.close()

    db = _open(path, migrations.profile_namespace(), tmp_path)
    try:
        assert fingerprint(db) == _fresh_fingerprint(tmp_path)
        assert db.query("SELECT id, title FROM talk_projects ORDER BY id") == [(1, "T1"), (2, "T2")]
        # 0004's backfill numbered the talks by creation time (T2 is older).
        if ALL_IDS.index(upto) < ALL_IDS.index("0004_talk_numbers_backfill"):
            assert db.query("SELECT id, talk_number FROM talk_projects ORDER BY id") == [
                (1, 2),
                (2, 1),
            ]
        assert db.query("SELECT id, project_id, audio_path FROM runs") == [(1, 1, "a.wav")]
        assert db.scalar("SELECT count(*) FROM feedback_notes") == 1
        assert db.query("PRAGMA foreign_key_check") == []
    finally:
        db.close()


def test_an_upgrade_takes_a_verified_backup_first(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _open(path, migrations.profile_namespace("0003_talk_training_flag"), tmp_path).close()
    before = set((tmp_path / "backups").glob("pre-migrate-pupitre-0004*"))
    _open(path, migrations.profile_namespace(), tmp_path).close()
    backups = set((tmp_path / "backups").glob("pre-migrate-pupitre-0004*.db")) - before
    assert len(backups) == 1
    with closing(sqlite3.connect(f"file:{backups.pop()}?mode=ro", uri=True)) as conn:
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        applied = conn.execute("SELECT id FROM schema_migrations ORDER BY id").fetchall()
        assert [r[0] for r in applied] == ALL_IDS[:3]  # the state before the upgrade


def _legacy_file(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.executescript((FIXTURES / "legacy_profile_v3.sql").read_text(encoding="utf-8"))
        conn.commit()
    finally:
        conn.close()


def test_legacy_database_is_adopted_upgraded_and_its_orphans_normalized(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    _legacy_file(path)
    db = _open(path, migrations.profile_namespace(), tmp_path)
    try:
        history = db.query(
            "SELECT id, kind FROM schema_migrations WHERE namespace = 'pupitre' ORDER BY id"
        )
        assert [r[0] for r in history] == ALL_IDS
        # Adopted at 0003 (the schema matched it exactly), then 0004-0007 ran for real.
        assert {r[0] for r in history if r[1] == "baseline"} == set(ALL_IDS[:3])
        assert fingerprint(db) == _fresh_fingerprint(tmp_path)
        assert db.posture.journal_mode == "WAL"

        # Valid data survived, numbered by creation time.
        assert db.query(
            "SELECT id, title, talk_number, is_training FROM talk_projects ORDER BY id"
        ) == [
            (1, "Keynote draft", 1, 0),
            (2, "Lightning talk", 3, 1),
            (3, "Meetup intro", 2, 0),
        ]
        # Orphans, per declared policy.
        assert db.query("SELECT id, feedback_id FROM runs ORDER BY id") == [
            (1, 1),
            (2, None),
            (4, None),
        ]
        assert db.query("SELECT id FROM talk_outlines") == [(1,)]
        assert db.query("SELECT id FROM quest_attempts") == [(1,)]
        assert db.query("SELECT id FROM feedback_notes") == [(1,)]
        assert db.query("SELECT id FROM peer_reviews") == [(1,)]
        assert db.query("SELECT project_id FROM active_state") == [(None,)]
        lost = db.query(
            "SELECT source_table, source_rowid FROM bastion_lost_and_found ORDER BY source_table"
        )
        assert lost == [("peer_reviews", 2), ("runs", 3)]
        assert db.query("PRAGMA foreign_key_check") == []
        assert db.query("SELECT value FROM profile_settings WHERE key = 'ui.theme'") == [("dark",)]
    finally:
        db.close()


def test_foreign_keys_are_enforced_after_0007(app: Pupitre) -> None:
    db = app.profile()
    with pytest.raises(ReferenceViolation):
        db.write(
            lambda tx: tx.insert("INSERT INTO runs (project_id, created_at) VALUES (404, 1.0)")
        )
    with pytest.raises(ReferenceViolation):
        db.write(
            lambda tx: tx.insert(
                "INSERT INTO quest_attempts (quest_id, created_at) VALUES ('nope', 1.0)"
            )
        )

    # ON DELETE CASCADE / SET NULL as declared.
    def graph(tx: WriteTx) -> None:
        tx.execute("INSERT INTO talk_projects (id, title, created_at) VALUES (50, 't', 1.0)")
        tx.execute(
            "INSERT INTO auto_feedback (id, kind, summary, created_at) VALUES (60, 'run', 's', 1.0)"
        )
        tx.execute(
            "INSERT INTO runs (id, project_id, feedback_id, created_at) VALUES (70, 50, 60, 1.0)"
        )
        tx.execute(
            "INSERT INTO peer_reviews (run_id, reviewer, body, created_at) VALUES (70, 'r', 'b', 1.0)"
        )

    db.write(graph)
    db.write(lambda tx: tx.execute("DELETE FROM auto_feedback WHERE id = 60"))
    assert db.scalar("SELECT feedback_id FROM runs WHERE id = 70") is None
    db.write(lambda tx: tx.execute("DELETE FROM talk_projects WHERE id = 50"))
    assert db.scalar("SELECT count(*) FROM runs WHERE id = 70") == 0
    assert db.scalar("SELECT count(*) FROM peer_reviews WHERE run_id = 70") == 0


def test_a_gap_in_the_history_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    _open(path, migrations.profile_namespace(), tmp_path).close()
    db = Database.open(path)
    try:
        db.write(
            lambda tx: tx.execute(
                "DELETE FROM schema_migrations WHERE namespace = 'pupitre' AND id = '0005_runs_audio_nullable'"
            )
        )
        with pytest.raises(MigrationGap) as info:
            Migrator(db).migrate([migrations.profile_namespace()])
        assert "0005_runs_audio_nullable" in info.value.message
    finally:
        db.close()


def test_a_migration_added_before_an_applied_one_is_out_of_order(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    _open(path, migrations.profile_namespace(), tmp_path).close()
    late = Migration.sql("0005_late_hotfix", "CREATE TABLE hotfix (id INTEGER PRIMARY KEY);")
    renumbered = [
        m if m.id != "0005_runs_audio_nullable" else late for m in migrations.profile_migrations()
    ]
    # Same history, but the code now has a 0005 it never applied before 0006/0007.
    db = Database.open(path)
    try:
        db.write(
            lambda tx: tx.execute(
                "DELETE FROM schema_migrations WHERE id = '0005_runs_audio_nullable'"
            )
        )
        db.write(
            lambda tx: tx.execute(
                "UPDATE schema_migrations SET previous_id = '0004_talk_numbers_backfill' "
                "WHERE id = '0006_seed_quests'"
            )
        )
        with pytest.raises(MigrationOutOfOrder):
            Migrator(db).migrate([Namespace("pupitre", renumbered)])
    finally:
        db.close()


def test_an_edited_migration_and_a_newer_database_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    _open(path, migrations.profile_namespace(), tmp_path).close()
    edited = [
        m
        if m.id != "0006_seed_quests"
        else Migration.sql(m.id, "INSERT OR IGNORE INTO quests (id, title) VALUES ('x', 'y');")
        for m in migrations.profile_migrations()
    ]
    db = Database.open(path)
    try:
        with pytest.raises(MigrationChecksumMismatch):
            Migrator(db).migrate([Namespace("pupitre", edited)])
        # An app one release older than the database: refused, not "migrated back".
        with pytest.raises(MigrationUnknown):
            Migrator(db).migrate([migrations.profile_namespace("0006_seed_quests")])
    finally:
        db.close()


def test_an_unrecognised_legacy_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "odd.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE talk_projects (id INTEGER PRIMARY KEY, name TEXT);"
        "INSERT INTO talk_projects (name) VALUES ('kept');"
    )
    conn.close()
    with pytest.raises(BaselineMismatch) as info:
        _open(path, migrations.profile_namespace(), tmp_path)
    assert "talk_projects" in info.value.message
    with closing(sqlite3.connect(path)) as check:
        assert check.execute("SELECT name FROM talk_projects").fetchall() == [("kept",)]
        tables = {r[0] for r in check.execute("SELECT name FROM sqlite_master")}
        assert (
            "schema_migrations" not in tables
            or not check.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
        )
