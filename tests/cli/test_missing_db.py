"""No command creates a new empty database in a home whose database has gone missing.

The home records each database it has held (``<home>/.bastion-home``, see
``bastion._home``); a recorded database that is missing stops every command with
``StoreMissing`` (exit 66) naming the file and what to do, and nothing is created in its
place. ``bastion db recover`` restores the newest verified backup; with none,
``--allow-empty`` starts an empty database on purpose.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from bastion._home import MARKER, record
from bastion.app import Home
from bastion.cli import cli
from bastion.config import load_config
from bastion.errors import StoreMissing
from bastion.store import Database
from bastion.vault.index import open_vault_db
from tests.fsfaults import mounted_tmpfs, needs_root

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


def test_the_record_names_each_database_its_file_and_when_it_was_recorded(tmp_path: Path) -> None:
    before = dt.datetime.now(dt.UTC)
    home = _home(tmp_path)
    open_vault_db(load_config(home, env={})).close()
    after = dt.datetime.now(dt.UTC)

    data = json.loads((home / MARKER).read_text(encoding="utf-8"))
    assert data["format"] == 1
    assert sorted(data["databases"]) == ["bastion", "vault"]
    for name, entry in data["databases"].items():
        assert entry["file"] == f"{name}.db"
        recorded_at = dt.datetime.fromisoformat(entry["recorded_at"])
        assert recorded_at.utcoffset() == dt.timedelta(0), entry  # UTC, said so
        assert before <= recorded_at <= after


def test_recording_a_database_keeps_the_ones_recorded_before(tmp_path: Path) -> None:
    home = _home(tmp_path)  # records bastion
    cfg = load_config(home, env={})
    open_vault_db(cfg).close()  # records vault beside it
    (home / "bastion.db").unlink()
    with pytest.raises(StoreMissing):
        Home.open(cfg)
    assert not (home / "bastion.db").exists()


def test_the_refusal_names_the_file_the_record_and_how_to_restore_it(tmp_path: Path) -> None:
    """Word for word: which file, where it is recorded, and the command for that database (a
    library caller gets the file and the database's name in ``details``)."""
    home = _home(tmp_path)
    cfg = load_config(home, env={})
    open_vault_db(cfg).close()
    (home / "bastion.db").unlink()
    (home / "vault.db").unlink()
    with pytest.raises(StoreMissing) as bastion_db:
        Home.open(cfg, check=False)
    with pytest.raises(StoreMissing) as vault_db:
        open_vault_db(cfg)
    for caught, name, recover in (
        (bastion_db, "bastion", "`bastion db recover`"),
        (vault_db, "vault", "`bastion db recover --db vault`"),
    ):
        path = home / f"{name}.db"
        assert caught.value.message == (
            f"{path} is missing, but this home has held it (recorded in {home / MARKER}); "
            "nothing was created in its place"
        )
        assert caught.value.hint == (
            f"If it was moved, put it back. Otherwise {recover} restores the newest verified "
            "backup (`bastion db backups` lists them); with no backup, `--allow-empty` starts "
            "an empty database on purpose."
        )
        assert caught.value.details == {"path": str(path), "database": name}


def test_a_record_that_is_not_a_json_object_is_damaged_not_a_crash(tmp_path: Path) -> None:
    """A record holding JSON of another shape (a hand edit, another program) is a damaged
    record: the home opens, and the record is written again."""
    home = _home(tmp_path)
    (home / MARKER).write_text('["bastion", "vault"]\n', encoding="utf-8")
    with Home.open(load_config(home, env={})) as opened:
        assert opened.settings.get("kept") == 1
    assert list(json.loads((home / MARKER).read_text(encoding="utf-8"))["databases"]) == ["bastion"]


@pytest.mark.parametrize("damage", ["{not json", '{"format": 1}', "\x00\xff"])
def test_a_damaged_record_still_keeps_a_deleted_database_from_coming_back_empty(
    tmp_path: Path, damage: str
) -> None:
    """A damaged record was read as holding nothing: with bastion.db deleted too, the next
    open made a new, empty one without a word. Its contents unknown, it is taken to have
    held bastion.db (the database every home is made with), and the refusal says why."""
    home = _home(tmp_path)
    (home / MARKER).write_text(damage, encoding="utf-8", errors="surrogateescape")
    (home / "bastion.db").unlink()
    cfg = load_config(home, env={})
    with pytest.raises(StoreMissing, match="this home has held it: it was deleted or moved"):
        Home.open(cfg)  # the open-time check asks the record too
    with pytest.raises(StoreMissing) as caught:
        Home.open(cfg, check=False)
    assert caught.value.message == (
        f"{home / 'bastion.db'} is missing, but its record of what it held ({home / MARKER}) "
        "is damaged, so it may have held it; nothing was created in its place"
    )
    assert "--allow-empty" in caught.value.hint
    assert not (home / "bastion.db").exists()


def test_a_damaged_record_is_written_again_without_forgetting_bastion_db(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The vault opened alone (as an app without a Home does) writes the damaged record
    again: with bastion.db, which a later deletion must not let come back empty."""
    home = _home(tmp_path)
    cfg = load_config(home, env={})
    (home / MARKER).write_text("{not json", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="bastion.home"):
        open_vault_db(cfg).close()
    assert caplog.record_tuples == [
        (
            "bastion.home",
            logging.WARNING,
            f"{home / MARKER} was damaged; written again with bastion, vault",
        )
    ]
    rebuilt = json.loads((home / MARKER).read_text(encoding="utf-8"))["databases"]
    assert {name: entry["file"] for name, entry in rebuilt.items()} == {
        "bastion": "bastion.db",
        "vault": "vault.db",
    }
    for entry in rebuilt.values():
        assert dt.datetime.fromisoformat(entry["recorded_at"]).utcoffset() == dt.timedelta(0)
    (home / "bastion.db").unlink()
    with pytest.raises(StoreMissing, match="recorded in"):
        Home.open(cfg, check=False)  # the record's own refusal: it is whole again


@pytest.mark.root
def test_a_record_that_cannot_be_written_is_a_warning_and_written_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Best effort: on a read-only disk the record is not written, a warning says which
    database, where and why, nothing is raised; the next record once it can be writes it."""
    needs_root()
    with mounted_tmpfs(tmp_path / "mnt") as mount:
        home = _home(mount.path)
        (home / MARKER).unlink()  # as an older bastion left the home
        mount.remount("ro")
        with caplog.at_level(logging.WARNING, logger="bastion.home"):
            record(home, "bastion", home / "bastion.db")
        assert caplog.record_tuples == [
            (
                "bastion.home",
                logging.WARNING,
                f"could not record bastion in {home / MARKER}: Read-only file system",
            )
        ]
        assert not (home / MARKER).exists()
        mount.remount("rw")
        record(home, "bastion", home / "bastion.db")
        assert list(json.loads((home / MARKER).read_text(encoding="utf-8"))["databases"]) == [
            "bastion"
        ]
