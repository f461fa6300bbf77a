"""Seed 004 workstream 3: ON DELETE and ON UPDATE defined for every relation, and each rule
tested on real rows. ``migrations.RELATIONS`` is the declaration; the schema must say exactly
that (PRAGMA foreign_key_list), and deleting or re-keying each parent must do what it says."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.errors import ReferenceViolation
from bastion.store import Database, WriteTx
from examples.pupitre import migrations
from examples.pupitre.app import Pupitre, open_database
from examples.pupitre.migrations import RELATIONS, Relation

PARENT_KEY = {"talk_projects": 50, "auto_feedback": 60, "quests": "q-old", "runs": 70}
NEW_KEY = {"talk_projects": 51, "auto_feedback": 61, "quests": "q-new", "runs": 71}
#: The child row of each relation: (primary key column, its value), as ``graph`` inserts them.
CHILD = {
    ("talk_outlines", "project_id"): ("id", 80),
    ("runs", "project_id"): ("id", 70),
    ("runs", "feedback_id"): ("id", 70),
    ("quest_attempts", "quest_id"): ("id", 90),
    ("quest_attempts", "feedback_id"): ("id", 90),
    ("feedback_notes", "feedback_id"): ("id", 100),
    ("peer_reviews", "run_id"): ("id", 110),
    ("active_state", "project_id"): ("key", "current_project"),
}


def graph(tx: WriteTx) -> None:
    """One row in every table, each relation pointing at its parent."""
    tx.execute("INSERT INTO talk_projects (id, title, created_at) VALUES (50, 't', 1.0)")
    tx.execute("INSERT INTO quests (id, title) VALUES ('q-old', 'quest')")
    tx.execute(
        "INSERT INTO auto_feedback (id, kind, summary, created_at) VALUES (60, 'run', 's', 1.0)"
    )
    tx.execute(
        "INSERT INTO talk_outlines (id, project_id, body, updated_at) VALUES (80, 50, 'o', 1)"
    )
    tx.execute("INSERT INTO runs (id, project_id, feedback_id, created_at) VALUES (70, 50, 60, 1)")
    tx.execute(
        "INSERT INTO quest_attempts (id, quest_id, feedback_id, created_at) "
        "VALUES (90, 'q-old', 60, 1)"
    )
    tx.execute("INSERT INTO feedback_notes (id, feedback_id, body) VALUES (100, 60, 'n')")
    tx.execute(
        "INSERT INTO peer_reviews (id, run_id, reviewer, body, created_at) "
        "VALUES (110, 70, 'r', 'b', 1)"
    )
    tx.execute("INSERT INTO active_state (key, project_id) VALUES ('current_project', 50)")


def _child_value(db: Database, rel: Relation) -> tuple[bool, object]:
    """(the child row still exists, its reference column)."""
    key_col, key = CHILD[(rel.table, rel.column)]
    row = db.query_one(
        f"SELECT {rel.column} FROM {rel.table} WHERE {key_col} = ?",
        (key,),
    )
    return (row is not None, None if row is None else row[0])


def test_eight_relations_each_with_both_rules() -> None:
    assert len(RELATIONS) == 8
    assert len({(r.table, r.column) for r in RELATIONS}) == 8
    for rel in RELATIONS:
        assert rel.on_delete in {"CASCADE", "SET NULL", "RESTRICT"}, rel
        assert rel.on_update in {"CASCADE", "SET NULL", "RESTRICT"}, rel
        assert rel.why


def test_the_schema_declares_exactly_the_relations(app: Pupitre) -> None:
    db = app.profile()
    declared = set()
    for table in {r.table for r in RELATIONS}:
        for row in db.query(f"PRAGMA foreign_key_list({table})"):
            # (id, seq, parent, from, to, on_update, on_delete, match)
            declared.add((table, row[3], row[2], row[6], row[5]))
    assert declared == {(r.table, r.column, r.parent, r.on_delete, r.on_update) for r in RELATIONS}


@pytest.mark.parametrize("rel", RELATIONS, ids=lambda r: f"{r.table}.{r.column}")
def test_on_delete_of_the_parent(app: Pupitre, rel: Relation) -> None:
    db = app.profile()
    db.write(graph)
    assert _child_value(db, rel) == (True, PARENT_KEY[rel.parent])
    db.write(
        lambda tx: tx.execute(
            f"DELETE FROM {rel.parent} WHERE id = ?",
            (PARENT_KEY[rel.parent],),
        )
    )
    expected = (False, None) if rel.on_delete == "CASCADE" else (True, None)
    assert _child_value(db, rel) == expected
    assert db.query("PRAGMA foreign_key_check") == []


@pytest.mark.parametrize("rel", RELATIONS, ids=lambda r: f"{r.table}.{r.column}")
def test_on_update_of_the_parent_key(app: Pupitre, rel: Relation) -> None:
    db = app.profile()
    db.write(graph)
    db.write(
        lambda tx: tx.execute(
            f"UPDATE {rel.parent} SET id = ? WHERE id = ?",
            (NEW_KEY[rel.parent], PARENT_KEY[rel.parent]),
        )
    )
    assert rel.on_update == "CASCADE"
    assert _child_value(db, rel) == (True, NEW_KEY[rel.parent])
    assert db.query("PRAGMA foreign_key_check") == []


@pytest.mark.parametrize("rel", RELATIONS, ids=lambda r: f"{r.table}.{r.column}")
def test_a_reference_to_a_missing_parent_is_refused(app: Pupitre, rel: Relation) -> None:
    db = app.profile()
    db.write(graph)
    key_col, key = CHILD[(rel.table, rel.column)]
    missing = "no-such" if rel.parent == "quests" else 404
    with pytest.raises(ReferenceViolation):
        db.write(
            lambda tx: tx.execute(
                f"UPDATE {rel.table} SET {rel.column} = ? WHERE {key_col} = ?",
                (missing, key),
            )
        )
    assert _child_value(db, rel) == (True, PARENT_KEY[rel.parent])


def test_0008_upgrades_a_0007_database_keeping_its_rows(tmp_path: Path) -> None:
    root = tmp_path
    path = root / "p.db"
    old = migrations.profile_namespace("0007_fk_constraints")
    db = open_database(path, old, backups_dir=root / "b", quarantine_dir=root / "q")
    db.write(graph)
    db.close()
    db = open_database(
        path, migrations.profile_namespace(), backups_dir=root / "b", quarantine_dir=root / "q"
    )
    try:
        assert db.scalar("SELECT count(*) FROM peer_reviews") == 1
        db.write(lambda tx: tx.execute("UPDATE runs SET id = 71 WHERE id = 70"))
        assert db.scalar("SELECT run_id FROM peer_reviews") == 71
    finally:
        db.close()
