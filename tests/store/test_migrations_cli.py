"""``bastion db migrate``, ``db baseline`` and ``db status`` migration output, in-process; on a
plaintext home and once more on an encrypted one (``db_key``: the home reads its key from
``BASTION_DB_KEY``)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from bastion.cli import cli
from bastion.store.crypt import DatabaseKey
from bastion.store.crypt.cipher import connect

pytestmark = pytest.mark.encrypted_rerun


def _run(home: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _home(tmp_path: Path, key: DatabaseKey | None) -> Path:
    home = tmp_path / "home"
    assert _run(home, "init")[0] == 0
    assert (key is None) == (b"SQLite format 3" in (home / "bastion.db").read_bytes()[:16])
    return home


def test_status_shows_every_namespace_of_bastion_db(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    home = _home(tmp_path, db_key)
    code, out, _ = _run(home, "db", "status")
    assert code == 0
    assert "migrations core: 2 applied, 0 pending (none); last 0002_logs_search at " in out
    assert "migrations supervisor: 1 applied, 0 pending (none); last 0001_supervisor at " in out
    states = json.loads(_run(home, "db", "status", "--json")[1])["migrations"]
    assert [s["namespace"] for s in states] == ["core", "supervisor", "config_history"]
    assert [s["applied"] for s in states] == [
        ["0001_core", "0002_logs_search"],
        ["0001_supervisor"],
        ["0001_config_history"],
    ]
    assert [s["problem"] for s in states] == [None, None, None]


def test_edited_core_migration_refuses_then_accept_edited_records_it(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    home = _home(tmp_path, db_key)
    raw = connect(str(home / "bastion.db"), key=db_key)
    raw.execute("UPDATE schema_migrations SET checksum = 'abc123' WHERE id = '0001_core'")
    raw.close()
    code, out, _ = _run(home, "db", "status")
    assert code == 0
    assert "problem: migration core/0001_core" in out
    code, _, err = _run(home, "db", "migrate")
    assert code == 65
    assert "applied checksum abc123" in err
    assert "bastion.domains.migrations/0001_core.sql" in err
    code, out, _ = _run(home, "settings", "list")  # opening the home refuses too
    assert code == 65
    code, out, _ = _run(home, "db", "migrate", "--accept-edited", "core/0001_core", "--json")
    assert code == 0
    assert json.loads(out)["accepted_edits"] == ["core/0001_core"]
    assert _run(home, "settings", "list")[0] == 0
    raw = connect(str(home / "bastion.db"), key=db_key)
    kinds = [r[0] for r in raw.execute("SELECT kind FROM events ORDER BY id")]
    raw.close()
    assert "migration.edit_accepted" in kinds
    code, _, err = _run(home, "db", "migrate", "--accept-edited", "nope")
    assert code == 2


@pytest.fixture
def app_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    pkg = tmp_path / "pkgs" / "myapp_migrations"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "0001_init.sql").write_text(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);\n"
    )
    (pkg / "0002_tags.sql").write_text(
        textwrap.dedent(
            """
            CREATE TABLE tags (id INTEGER PRIMARY KEY, note_id INTEGER NOT NULL REFERENCES notes (id), tag TEXT);
            CREATE INDEX tags_note ON tags (note_id);
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    return "myapp=myapp_migrations"


def test_app_namespace_dry_run_then_migrate(
    tmp_path: Path, app_package: str, db_key: DatabaseKey | None
) -> None:
    home = _home(tmp_path, db_key)
    db_file = home / "bastion.db"
    before, mtime = db_file.read_bytes(), db_file.stat().st_mtime_ns
    code, out, _ = _run(
        home, "db", "migrate", "--package", app_package, "--namespace", "myapp", "--dry-run"
    )
    assert code == 0
    assert (
        "dry run (on a temporary copy; nothing changed): would apply 2 migration(s): myapp/0001_init, myapp/0002_tags"
        in out
    )
    assert "schema added: index:tags_note, table:notes, table:tags" in out
    assert db_file.read_bytes() == before
    assert db_file.stat().st_mtime_ns == mtime
    code, out, _ = _run(home, "db", "migrate", "--package", app_package, "--json")
    assert code == 0
    data = json.loads(out)
    assert [a["id"] for a in data["applied"]] == ["0001_init", "0002_tags"]
    (backup,) = data["backups"]
    assert Path(backup).parent == home / "backups"
    assert Path(backup).name.startswith("pre-migrate-myapp-0001_init-")
    code, _, err = _run(home, "db", "migrate", "--namespace", "nosuch")
    assert code == 2
    assert "Invalid value for --namespace: unknown namespace(s) 'nosuch'; known: config_hist" in err
    # db baseline takes the namespace as its argument: named so, and an empty one shown.
    code, _, err = _run(home, "db", "baseline", "", "--at", "0001_init")
    assert code == 2
    assert "Invalid value for NAMESPACE: unknown namespace(s) ''; known: config_history" in err


def test_baseline_adopts_a_legacy_app_database(
    tmp_path: Path, app_package: str, db_key: DatabaseKey | None
) -> None:
    home = _home(tmp_path, db_key)
    raw = connect(str(home / "bastion.db"), key=db_key)
    raw.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    raw.close()
    code, _, err = _run(
        home, "db", "baseline", "myapp", "--at", "0002_tags", "--package", app_package
    )
    assert code == 65
    assert "missing index:tags_note, table:tags" in err
    code, out, _ = _run(
        home, "db", "baseline", "myapp", "--at", "0001_init", "--package", app_package
    )
    assert code == 0
    assert out == "baselined myapp at 0001_init: recorded 0001_init\n"
    code, out, _ = _run(home, "db", "migrate", "--package", app_package)
    assert code == 0
    assert "applied 1 migration(s): myapp/0002_tags" in out
    code, _, err = _run(
        home, "db", "baseline", "myapp", "--at", "0009_nope", "--package", app_package
    )
    assert code == 2
    assert "no migration '0009_nope'" in err
