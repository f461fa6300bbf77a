"""The built-in tables and migrations as wired into ``Home`` (app.py)."""

from __future__ import annotations

from bastion.app import Home
from bastion.config import Config
from bastion.domains.logs import LogRecord
from bastion.store.migrations import Migration, Namespace

APP = Namespace(
    "notes_app",
    [
        Migration.sql(
            "0001_notes", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);"
        ),
        Migration.sql("0002_tags", "ALTER TABLE notes ADD COLUMN tag TEXT;"),
    ],
)


def test_fresh_home_has_core_tables_repos_and_app_namespace(home: Config) -> None:
    with Home.open(home, namespaces=[APP]) as h:
        h.settings.set("ui.theme", "dark")
        h.logs.insert_batch([LogRecord(1.0, "info", "svc", "stdout", "hi")])
        h.activity.record("cli", "settings.set", "ui.theme")
        assert h.settings.get("ui.theme") == "dark"
        assert [r.message for r in h.logs.query()] == ["hi"]
        assert [e.kind for e in h.events.query(kind="setting.changed")] == ["setting.changed"]
        h.db.write(lambda tx: tx.execute("INSERT INTO notes (body, tag) VALUES ('x', 't')"))
        states = {s["namespace"]: s for s in h.status()["migrations"]}
    assert states["core"]["applied"] == ["0001_core", "0002_logs_search"]
    assert states["notes_app"]["applied"] == ["0001_notes", "0002_tags"]
    assert states["notes_app"]["pending"] == []
    # A brand-new file has nothing worth a backup: `init` (core, supervisor) takes none; the
    # app's namespace, migrated by the open after init, does.
    assert list(home.backups_dir.glob("pre-migrate-core-*.db")) == []
    assert list(home.backups_dir.glob("pre-migrate-supervisor-*.db")) == []
    assert len(list(home.backups_dir.glob("pre-migrate-notes_app-*.db"))) == 1


def test_reopening_with_a_new_app_migration_backs_up_first(home: Config) -> None:
    first = Namespace("notes_app", APP.migrations[:1])
    Home.open(home, namespaces=[first]).close()
    with Home.open(home, migrate=False, namespaces=[APP]) as h:
        (state,) = [s for s in h.status()["migrations"] if s["namespace"] == "notes_app"]
        assert state["pending"] == ["0002_tags"]
    with Home.open(home, namespaces=[APP]) as h:
        assert h.db.query("SELECT name FROM pragma_table_info('notes') WHERE name = 'tag'") == [
            ("tag",)
        ]
        kinds = [e.kind for e in h.events.query()]
    (backup,) = home.backups_dir.glob("pre-migrate-notes_app-0002_tags-*.db")
    assert backup.stat().st_mode & 0o777 == 0o600
    assert "backup.created" in kinds
    assert (
        kinds.count("migration.applied") == 6
    )  # core x 2, supervisor, config_history, notes_app x 2
