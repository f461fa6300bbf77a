"""Orphan normalization when a migration adds FOREIGN KEYs to legacy data (seed 004's
``0007_fk_constraints``): each declared policy, its count, and enforcement afterwards."""

from __future__ import annotations

import json

import pytest

from bastion.errors import ReferenceViolation
from bastion.store import Database, WriteTx
from bastion.store.migrations import Migration, Migrator, Namespace, OrphanAction, OrphanPolicy
from tests.store.migrations_support import db

__all__ = ["db"]

pytestmark = pytest.mark.encrypted_rerun  # the shared `db` fixture opens app.db with db_key

LEGACY = Migration.sql(
    "0001_legacy",
    """
    CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
    CREATE TABLE attempts (id INTEGER PRIMARY KEY, project_id INTEGER, score INTEGER);
    CREATE TABLE notes (id INTEGER PRIMARY KEY, attempt_id INTEGER, text TEXT);
    CREATE TABLE reviews (id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL, verdict TEXT);
    """,
)


def _fill(tx: WriteTx) -> None:
    tx.execute("INSERT INTO projects (id, name) VALUES (1, 'talk'), (2, 'demo')")
    # attempts 11 and 12 point at projects that were deleted long ago.
    tx.execute(
        "INSERT INTO attempts (id, project_id, score) VALUES (10, 1, 5), (11, 9, 3), (12, 8, 4), (13, NULL, 1)"
    )
    # note 21 hangs off orphan attempt 11; note 22 off an attempt that never existed.
    tx.execute(
        "INSERT INTO notes (id, attempt_id, text) VALUES (20, 10, 'ok'), (21, 11, 'x'), (22, 99, 'y')"
    )
    tx.execute(
        "INSERT INTO reviews (id, project_id, verdict) VALUES (30, 2, 'good'), (31, 7, 'lost')"
    )


def _rebuild_all(tx: WriteTx) -> None:
    from bastion.store.migrations import rebuild_table

    rebuild_table(
        tx,
        "attempts",
        "CREATE TABLE attempts (id INTEGER PRIMARY KEY, project_id INTEGER REFERENCES projects (id) ON DELETE CASCADE, score INTEGER)",
    )
    rebuild_table(
        tx,
        "notes",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, attempt_id INTEGER REFERENCES attempts (id) ON DELETE SET NULL, text TEXT)",
    )
    rebuild_table(
        tx,
        "reviews",
        "CREATE TABLE reviews (id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL REFERENCES projects (id), verdict TEXT)",
    )


FK = Namespace(
    "seed004",
    [
        LEGACY,
        Migration.python(
            "0002_fk_constraints",
            _rebuild_all,
            source="rebuild attempts/notes/reviews with FKs v1",
            foreign_keys_off=True,
            orphans=[
                OrphanPolicy("attempts", "project_id", "projects", OrphanAction.DELETE),
                OrphanPolicy("notes", "attempt_id", "attempts", OrphanAction.SET_NULL),
                OrphanPolicy("reviews", "project_id", "projects", OrphanAction.LOST_AND_FOUND),
            ],
        ),
    ],
)


def test_orphan_policies_report_counts_and_leave_enforced_foreign_keys(db: Database) -> None:
    Migrator(db).migrate([Namespace("seed004", [LEGACY])])
    db.write(_fill)
    report = Migrator(db).migrate([FK])

    assert report.orphans == {
        "attempts.project_id->projects.id": 2,
        "notes.attempt_id->attempts.id": 2,
        "reviews.project_id->projects.id": 1,
    }
    assert db.query("SELECT id, project_id FROM attempts ORDER BY id") == [(10, 1), (13, None)]
    assert db.query("SELECT id, attempt_id FROM notes ORDER BY id") == [
        (20, 10),
        (21, None),
        (22, None),
    ]
    assert db.query("SELECT id FROM reviews") == [(30,)]
    (moved,) = db.query(
        "SELECT source_table, source_rowid, reason, row_json FROM bastion_lost_and_found"
    )
    assert moved[:3] == ("reviews", 31, "orphan: reviews.project_id->projects.id")
    assert json.loads(moved[3]) == {"id": 31, "project_id": 7, "verdict": "lost"}
    assert db.query("PRAGMA foreign_key_check") == []

    # Enforcement after: new orphans are refused, cascades work.
    with pytest.raises(ReferenceViolation):
        db.write(lambda tx: tx.execute("INSERT INTO attempts (project_id, score) VALUES (404, 0)"))
    with pytest.raises(ReferenceViolation):
        db.write(lambda tx: tx.execute("INSERT INTO reviews (project_id) VALUES (404)"))
    db.write(lambda tx: tx.execute("DELETE FROM reviews WHERE project_id = 1"))
    db.write(lambda tx: tx.execute("DELETE FROM projects WHERE id = 1"))
    assert db.query("SELECT id FROM attempts") == [(13,)]
    assert db.query("SELECT id, attempt_id FROM notes ORDER BY id") == [
        (20, None),
        (21, None),
        (22, None),
    ]


def test_orphan_counts_are_zero_on_clean_data_and_indexes_survive_rebuild(db: Database) -> None:
    Migrator(db).migrate([Namespace("seed004", [LEGACY])])
    db.write(lambda tx: tx.execute("CREATE INDEX attempts_project ON attempts (project_id)"))
    db.write(lambda tx: tx.execute("INSERT INTO projects (id, name) VALUES (1, 'p')"))
    report = Migrator(db).migrate([FK])
    assert set(report.orphans.values()) == {0}
    assert db.scalar("SELECT count(*) FROM sqlite_master WHERE name = 'attempts_project'") == 1
    assert (
        db.scalar("SELECT count(*) FROM sqlite_master WHERE name = 'bastion_lost_and_found'") == 0
    )


def test_policy_names_are_checked_as_identifiers() -> None:
    with pytest.raises(ValueError, match="plain SQL identifier"):
        OrphanPolicy("t; DROP TABLE x", "c", "p", OrphanAction.DELETE)
