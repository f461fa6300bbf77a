"""``bastion db status|check|stats|backups|backup|restore|recover --db PATH``: the operator's
workflows on an application's own databases (a data directory with ``global.db`` and
``profiles/<name>.db``, as examples/pupitre keeps), not only on a bastion home.

Pointing ``--home`` at such a directory must create nothing in it: no ``bastion.db``, no
``run/``, no ``.bastion-home``. Backups and quarantined files go where the library keeps them
for several databases in one directory: ``backups/<name>/`` and ``quarantine/<name>/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bastion.cli import cli
from bastion.store import Database
from bastion.store.migrations import Migration, Migrator, Namespace
from tests.store.opsfixtures import add_items, count_items, leaf_page_offset, overwrite

APP_NS = Namespace(
    "notes",
    [
        Migration.sql(
            "0001_items",
            "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, body TEXT);"
            "CREATE INDEX items_body ON items(body);",
        )
    ],
)


def _app_dir(tmp_path: Path) -> Path:
    """An application's data directory: global.db and profiles/main.db, both migrated by
    bastion's engine (a ``notes`` namespace), closed."""
    root = tmp_path / "app"
    (root / "profiles").mkdir(parents=True)
    for path, rows in ((root / "global.db", 10), (root / "profiles" / "main.db", 400)):
        db = Database.open(path, name=path.stem)
        try:
            Migrator(db).migrate([APP_NS])
            add_items(db, 0, rows)
        finally:
            db.close()
    return root


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _run(home: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--home", str(home), *args])
    return result.exit_code, result.stdout, result.stderr


def _json(home: Path, *args: str) -> Any:
    code, out, err = _run(home, *args, "--json")
    assert code == 0, (out, err)
    return json.loads(out)


def test_read_commands_on_an_app_directory_create_nothing_in_it(tmp_path: Path) -> None:
    root = _app_dir(tmp_path)
    before = _tree(root)

    # The default database (bastion.db) is not there: named, with what is there instead.
    code, _, err = _run(root, "db", "status")
    assert code == 66, err
    assert "not a bastion home" in err
    assert "global, profiles/main.db" in err

    status = _json(root, "db", "status", "--db", "profiles/main")
    assert status["database"] == str(root / "profiles" / "main.db")
    assert status["posture"]["journal_mode"] == "WAL"
    assert [(m["namespace"], m["applied"]) for m in status["migrations"]] == [
        ("notes", ["0001_items"])
    ]
    assert _json(root, "db", "status", "--db", "global")["database"] == str(root / "global.db")
    assert _json(root, "db", "status", "--db", str(root / "profiles" / "main.db"))["size_bytes"]
    check = _json(root, "db", "check", "--db", "profiles/main.db")
    assert (check["ok"], check["integrity_ok"]) == (True, True)
    stats = _json(root, "db", "stats", "--db", "profiles/main")
    assert stats["tables"]["items"]["rows"] == 400
    assert _json(root, "db", "backups", "--db", "profiles/main")["backups"] == []

    assert _tree(root) == before
    for made in ("bastion.db", "run", ".bastion-home", "vault.db"):
        assert not (root / made).exists()


def test_a_missing_app_database_is_named_with_the_ones_that_exist(tmp_path: Path) -> None:
    root = _app_dir(tmp_path)
    code, _, err = _run(root, "db", "check", "--db", "profiles/other")
    assert code == 66
    assert "profiles/other.db does not exist" in err
    assert "profiles/main.db" in err
    assert not (root / "profiles" / "other.db").exists()


def test_backup_and_restore_of_an_app_database(tmp_path: Path) -> None:
    root = _app_dir(tmp_path)
    made = _json(root, "db", "backup", "--db", "profiles/main")
    backup = Path(made["path"])
    assert backup.parent == root / "backups" / "main"
    assert made["row_counts"]["items"] == 400
    listed = _json(root, "db", "backups", "--db", "profiles/main")["backups"]
    assert [Path(b["path"]) for b in listed] == [backup]

    live = root / "profiles" / "main.db"
    db = Database.open(live, name="main")
    db.write(lambda tx: tx.execute("DELETE FROM items WHERE id > 100"))
    db.close()
    assert count_items(live) == 100

    restored = _json(root, "db", "restore", backup.name, "--db", "profiles/main", "--yes")
    assert restored["checks"]["integrity_ok"] is True
    assert restored["migrations"] == {"notes": {"applied": 1, "last": "0001_items"}}
    assert count_items(live) == 400
    assert Path(restored["quarantine_dir"]).parent == root / "quarantine" / "main"
    for made_file in ("bastion.db", "run", ".bastion-home"):
        assert not (root / made_file).exists()


def test_recover_a_damaged_app_database_from_its_backup(tmp_path: Path) -> None:
    root = _app_dir(tmp_path)
    _json(root, "db", "backup", "--db", "profiles/main")
    live = root / "profiles" / "main.db"
    overwrite(live, leaf_page_offset(live, "items"), b"\xa5" * 4096)

    code, _, err = _run(root, "db", "check", "--db", "profiles/main")
    assert code == 74, err
    assert f"bastion db recover --db {live}" in err

    report = _json(root, "db", "recover", "--db", "profiles/main")
    assert report["recovered"] is True
    assert Path(report["restored_from"]).parent == root / "backups" / "main"
    assert Path(report["quarantine_dir"]).parent == root / "quarantine" / "main"
    assert count_items(live) == 400
    assert _json(root, "db", "check", "--db", "profiles/main")["ok"] is True


def test_an_absolute_path_outside_the_home_with_its_own_backups_dir(tmp_path: Path) -> None:
    root = _app_dir(tmp_path)
    elsewhere = tmp_path / "bastion-home"
    elsewhere.mkdir()
    saved = tmp_path / "saved"
    saved.mkdir()
    db_file = str(root / "global.db")
    made = _json(elsewhere, "db", "backup", "--db", db_file, "--backups-dir", str(saved))
    assert Path(made["path"]).parent == saved
    names = [
        Path(b["path"])
        for b in _json(elsewhere, "db", "backups", "--db", db_file, "--backups-dir", str(saved))[
            "backups"
        ]
    ]
    assert names == [Path(made["path"])]
    assert not (elsewhere / "bastion.db").exists()


@pytest.mark.parametrize("value", ["../escape name", "bad name!"])
def test_a_bad_database_name_is_a_usage_error(tmp_path: Path, value: str) -> None:
    root = _app_dir(tmp_path)
    code, _, err = _run(root, "db", "status", "--db", value)
    assert code != 0
    assert "Traceback" not in err


def test_recover_and_restore_into_a_folder_that_does_not_exist_are_refused(tmp_path: Path) -> None:
    root = _app_dir(tmp_path)
    before = _tree(root)
    for args in (
        ("db", "recover", "--db", "nowhere/main"),
        ("db", "restore", "x.db", "--db", "nowhere/main", "--yes"),
    ):
        code, _, err = _run(root, *args)
        assert code == 66, (args, err)
        assert "nowhere/main.db does not exist" in err
    code, _, err = _run(root, "db", "restore", "--at", "-10m", "--db", "profiles/main", "--yes")
    assert code == 2
    assert "restored from a backup" in err
    assert _tree(root) == before


@pytest.mark.parametrize(
    "args",
    [("db", "timeline", "--db", "profiles/main"), ("db", "encrypt", "--db", "profiles/main")],
)
def test_home_only_commands_refuse_an_app_database_by_name(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    root = _app_dir(tmp_path)
    before = _tree(root)
    result = CliRunner().invoke(
        cli, ["--home", str(root), *args], env={"BASTION_STORE_ENCRYPTION": "required"}
    )
    assert result.exit_code == 2, result.stderr
    assert "works on the home's databases" in result.stderr
    assert _tree(root) == before


def test_another_spelling_of_a_homes_database_is_that_database(tmp_path: Path) -> None:
    """``--db home/../home/bastion.db`` or a path through a symlink to the home is the home's
    bastion.db, not an application's database: its backups went to ``backups/bastion/``
    (unlisted by ``db backups``, never found by ``restore --latest``), and a restore through
    it held no daemon lock (cli/_hold.py)."""
    home = tmp_path / "home"
    assert _run(home, "init")[0] == 0
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(home)
    spellings = [
        str(tmp_path / "elsewhere" / ".." / "home" / "bastion.db"),
        str(tmp_path / "link" / "bastion.db"),
        str(tmp_path / "link" / "bastion"),  # .db added, as for any path
    ]
    for spelling in spellings:
        made = _json(home, "db", "backup", "--db", spelling)
        assert Path(made["path"]).parent == home / "backups", (spelling, made["path"])
    listed = _json(home, "db", "backups", "--db", "bastion")
    assert len(listed["backups"]) == 3
    assert not (home / "backups" / "bastion").exists()
    # A real application database beside the home is still one.
    app = _app_dir(tmp_path)
    made = _json(home, "db", "backup", "--db", str(app / "global.db"))
    assert Path(made["path"]).parent == home / "backups" / "global"
