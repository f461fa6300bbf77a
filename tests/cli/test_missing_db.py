"""No command creates a new empty database in a home whose database has gone missing.

The home records each database it has held (``<home>/.bastion-home``, see
``bastion._home``); a recorded database that is missing stops every command with
``StoreMissing`` (exit 66) naming the file and what to do, and nothing is created in its
place. ``bastion db recover`` restores the newest verified backup; with none,
``--allow-empty`` starts an empty database on purpose.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from bastion.app import Home
from bastion.cli import cli
from bastion.config import load_config
from bastion.errors import StoreMissing
from bastion.store import Database
from bastion.vault.index import open_vault_db

EXIT_MISSING = 66


def _run(home: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--home", str(home), *args])
    return result.exit_code, result.stdout + result.stderr


def _home(tmp_path: Path, *, backup: bool = False) -> Path:
    cfg = load_config(tmp_path / "home", env={})
    with Home.init(cfg) as home:
        home.settings.set("kept", 1)
        if backup:
            home.backup()
        home.settings.set("after-backup", 2)
    return cfg.home


@pytest.mark.parametrize(
    "argv",
    [
        ("db", "status"),
        ("db", "check"),
        ("db", "stats"),
        ("settings", "get", "kept"),
        ("settings", "set", "new", "1"),
        ("settings", "list"),
        ("init",),
        ("serve", "--port", "0"),
    ],
    ids=" ".join,
)
def test_a_lost_database_is_never_recreated_empty(tmp_path: Path, argv: tuple[str, ...]) -> None:
    home = _home(tmp_path)
    (home / "bastion.db").unlink()  # closed cleanly: no -wal/-shm, and no backups either

    code, out = _run(home, *argv)
    assert code == EXIT_MISSING, out
    assert "bastion.db is missing" in out
    assert "bastion db recover" in out
    assert "Traceback" not in out
    assert not (home / "bastion.db").exists()
    assert not (home / "bastion.db-wal").exists()


def test_library_open_refuses_too(tmp_path: Path) -> None:
    home = _home(tmp_path)
    (home / "bastion.db").unlink()
    cfg = load_config(home, env={})
    for check in (True, False):
        with pytest.raises(StoreMissing):
            Home.open(cfg, check=check)
    assert not (home / "bastion.db").exists()


def test_recover_restores_the_newest_backup_of_a_lost_database(tmp_path: Path) -> None:
    home = _home(tmp_path, backup=True)
    (home / "bastion.db").unlink()
    code, out = _run(home, "db", "recover", "--json")
    assert code == 0, out
    assert json.loads(out)["placed"] == "backup"
    with Home.open(load_config(home, env={})) as h:
        assert h.settings.get("kept") == 1


def test_recover_without_a_backup_needs_allow_empty(tmp_path: Path) -> None:
    home = _home(tmp_path)
    (home / "bastion.db").unlink()
    code, out = _run(home, "db", "recover")
    assert code == EXIT_MISSING, out
    assert "--allow-empty" in out
    assert not (home / "bastion.db").exists()

    code, out = _run(home, "db", "recover", "--allow-empty", "--json")
    assert code == 0, out
    assert json.loads(out)["placed"] == "empty"
    db = home / "bastion.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    code, out = _run(home, "settings", "set", "fresh", "1")
    assert code == 0, out


def test_a_home_from_before_the_record_is_recorded_on_its_next_open(tmp_path: Path) -> None:
    home = _home(tmp_path)
    (home / ".bastion-home").unlink()  # as an older bastion left it
    code, out = _run(home, "db", "status")
    assert code == 0, out
    assert "bastion" in json.loads((home / ".bastion-home").read_text())["databases"]
    assert stat.S_IMODE((home / ".bastion-home").stat().st_mode) == 0o600
    (home / "bastion.db").unlink()
    code, out = _run(home, "db", "status")
    assert code == EXIT_MISSING, out


def test_a_home_from_before_the_record_with_a_vault_expects_its_database(tmp_path: Path) -> None:
    home = _home(tmp_path)
    (home / ".bastion-home").unlink()
    Database.open(home / "vault.db").close()  # the vault index says the home was used
    (home / "bastion.db").unlink()
    code, out = _run(home, "db", "status")
    assert code == EXIT_MISSING, out
    assert not (home / "bastion.db").exists()


def test_a_lost_vault_index_is_not_recreated(tmp_path: Path) -> None:
    home = _home(tmp_path)
    cfg = load_config(home, env={})
    open_vault_db(cfg).close()
    assert "vault" in json.loads((home / ".bastion-home").read_text())["databases"]
    (home / "vault.db").unlink()
    with pytest.raises(StoreMissing, match=r"vault\.db is missing") as caught:
        open_vault_db(cfg)
    assert "--db vault" in caught.value.hint
    assert not (home / "vault.db").exists()


def test_a_fresh_home_still_creates_its_database(tmp_path: Path) -> None:
    code, out = _run(tmp_path / "new-home", "init")
    assert code == 0, out
    assert (tmp_path / "new-home" / "bastion.db").exists()
