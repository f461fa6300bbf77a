"""``diagnostics.repo``: the catalog and check reads, on a sound database and on one whose
references or pages are broken (the tables are SQLite's own; the rows are pupitre's)."""

from __future__ import annotations

import apsw

from bastion.store import Database
from examples.pupitre.diagnostics import repo


def test_user_tables_lists_the_apps_tables_only(global_db: Database, profile_db: Database) -> None:
    assert repo.user_tables(global_db) == ["workspaces"]
    tables = repo.user_tables(profile_db)
    assert {"talk_projects", "runs", "quests", "profile_settings"} <= set(tables)
    assert "schema_migrations" not in tables
    assert tables == sorted(tables)


def test_checks_are_clean_on_a_sound_database(profile_db: Database) -> None:
    assert repo.integrity_check(profile_db) == ["ok"]
    assert repo.foreign_key_check(profile_db) == []


def test_foreign_key_check_names_each_orphan(profile_db: Database) -> None:
    """A row written without enforcement (as the legacy runtime wrote them) is reported with
    its table, rowid and missing parent -- also on a pooled reader that cached the schema
    before migration 0007 declared the foreign keys (PRAGMA foreign_key_check is compiled
    from the connection's cached schema and found nothing to check: a false "ok")."""
    legacy = apsw.Connection(str(profile_db.path))  # foreign_keys off, as SQLite's default
    try:
        legacy.execute(
            "INSERT INTO runs (id, project_id, audio_path, created_at) VALUES (7, 999, NULL, 1)"
        ).fetchall()
    finally:
        legacy.close()
    found = repo.foreign_key_check(profile_db)
    assert [v.to_dict() for v in found] == [
        {"table": "runs", "rowid": 7, "parent": "talk_projects"}
    ]
    assert repo.integrity_check(profile_db) == ["ok"]  # pages sound; only a reference broken
