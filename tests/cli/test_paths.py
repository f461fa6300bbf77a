"""Paths and values a user can type that no file can have: ``--db`` naming a directory (``/``,
``profiles/``, ``.``, ``a/..``), a folder this process may not enter, a NUL in an argument.
Each is an error naming the problem and the fix, never a traceback, and creates nothing.

(``tests/cli/test_malformed.py`` walks every command with these values; here, what the error
says.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from bastion.cli import cli
from bastion.store import Database
from tests.fsfaults import bastion, needs_root
from tests.helpers import file_vault_env

EXIT_MISSING = 66  # DatabaseNotFound
EXIT_PERMISSION = 73  # StorePermissionError
EXIT_USAGE = 2


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    result = CliRunner().invoke(cli, ["--home", str(home), "init"])
    assert result.exit_code == 0, result.output
    (home / "profiles").mkdir()
    Database.open(home / "profiles" / "main.db", name="main").close()
    return home


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(
    ("value", "folder"),
    [
        ("/", "/"),
        ("profiles/", "{home}/profiles"),
        (".", "{home}"),
        ("..", "{home}/.."),
        ("{home}", "{home}"),
    ],
)
def test_db_naming_a_directory_says_so_and_what_it_holds(
    tmp_path: Path, value: str, folder: str
) -> None:
    """`--db /` was a traceback (pathlib: "PosixPath('/') has an empty name"); `--db DIR`
    named a made-up DIR.db as missing."""
    home = _home(tmp_path)
    before = _tree(home)
    value, folder = value.format(home=home), folder.format(home=home)
    for args in (("db", "status"), ("db", "check"), ("db", "backup"), ("db", "recover")):
        result = CliRunner().invoke(cli, ["--home", str(home), *args, "--db", value])
        assert result.exit_code == EXIT_MISSING, (args, result.output)
        assert "Traceback" not in result.output
        assert f"is a directory ({folder}), not a database file" in result.stderr
        assert f"--db {Path(folder) / 'NAME.db'}" in result.stderr
    assert _tree(home) == before


def test_the_hint_lists_the_databases_in_the_directory_named(tmp_path: Path) -> None:
    home = _home(tmp_path)
    result = CliRunner().invoke(cli, ["--home", str(home), "db", "status", "--db", "profiles/"])
    assert "(SQLite databases there: main.db)" in result.stderr
    result = CliRunner().invoke(cli, ["--home", str(home), "db", "status", "--db", "./"])
    assert "(SQLite databases there: bastion.db)" in result.stderr


def test_a_parent_reference_past_a_missing_folder_is_named(tmp_path: Path) -> None:
    home = _home(tmp_path)
    result = CliRunner().invoke(cli, ["--home", str(home), "db", "status", "--db", "gone/.."])
    assert result.exit_code == EXIT_MISSING, result.output
    assert "'gone/..' is a directory" in result.stderr


@pytest.mark.root
def test_db_behind_a_folder_this_process_cannot_enter(tmp_path: Path) -> None:
    """`--db locked/x` where `locked` is 0000: a PermissionError traceback from pathlib's
    is_file; now the folder and the chmod that opens it."""
    needs_root()
    home = _home(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o000)
    try:
        for value in (str(locked / "x"), str(locked / "x.db")):
            done = bastion(home, "db", "status", "--db", value, drop_dac=True)
            assert done.returncode == EXIT_PERMISSION, done.stderr
            assert "Traceback" not in done.stderr
            assert f"may not enter {locked}" in done.stderr
            assert f"chmod 700 {locked}" in done.stderr
    finally:
        locked.chmod(0o700)


@pytest.mark.root
def test_a_folder_of_the_home_that_cannot_be_searched_is_left_out_of_a_hint(
    tmp_path: Path,
) -> None:
    """A folder that can be listed but not entered (0444): looking at its entries raised
    PermissionError while the hint for a missing database listed what the home holds."""
    needs_root()
    home = _home(tmp_path)
    odd = home / "odd"
    odd.mkdir()
    (odd / "x.db").write_bytes(b"")
    odd.chmod(0o444)
    try:
        done = bastion(home, "db", "status", "--db", "nothere", drop_dac=True)
        assert done.returncode == EXIT_MISSING, done.stderr
        assert "Traceback" not in done.stderr
        assert "no database 'nothere'" in done.stderr
        assert "Databases in this home: bastion, profiles/main.db." in done.stderr
    finally:
        odd.chmod(0o700)


@pytest.mark.parametrize(
    "argv",
    [
        ["--home", "h\0ome", "db", "status"],
        ["db", "backup", "--to", "a\0b"],
        ["secrets", "import", "a\0b.env"],
        ["settings", "set", "k\0ey", "1"],
        ["doctor", "--bundle", "b\0.tar"],
    ],
    ids=["home", "backup-to", "import-file", "settings-key", "doctor-bundle"],
)
def test_a_nul_in_any_argument_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    """Paths with a NUL were a ValueError ("embedded null byte") out of os.stat inside click's
    Path type or the command, before any of bastion's checks ran."""
    file_vault_env(monkeypatch)
    home = _home(tmp_path)
    before = _tree(home)
    result = CliRunner().invoke(cli, ["--home", str(home), *argv])
    assert result.exit_code == EXIT_USAGE, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "holds a NUL character" in result.stderr
    assert _tree(home) == before


def test_an_empty_home_is_a_usage_error_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--home "$UNSET"` was read as the current directory: `init` made a home there."""
    from bastion.config import load_config

    monkeypatch.chdir(tmp_path)
    for args in (["init"], ["db", "status"], ["settings", "set", "k", "1"]):
        result = CliRunner().invoke(cli, ["--home", "", *args])
        assert result.exit_code == EXIT_USAGE, result.output
        assert "'--home': is empty" in result.stderr
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="home is an empty path"):
        load_config("")


@pytest.mark.parametrize("kind", ["directory", "fifo"])
@pytest.mark.parametrize("side", ["source", "destination"])
def test_db_copy_names_a_folder_or_a_fifo_not_a_failing_disk(
    tmp_path: Path, kind: str, side: str
) -> None:
    """A folder or a FIFO given to `db copy` was "I/O error ... check the device (dmesg)":
    the disk blamed for a mistake in the path."""
    home = _home(tmp_path)
    odd = tmp_path / "odd"
    if kind == "directory":
        odd.mkdir()
    else:
        os.mkfifo(odd)
    db = str(home / "profiles" / "main.db")
    args = [str(odd), str(tmp_path / "out.db")] if side == "source" else [db, str(odd)]
    done = bastion(home, "db", "copy", *args, timeout=60)
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr
    what = "a directory" if kind == "directory" else "a FIFO"
    assert f"cannot open {odd}: it is {what}, not a database file" in done.stderr
    assert "dmesg" not in done.stderr


@pytest.mark.parametrize("kind", ["a FIFO", "a socket", "a device"])
def test_db_naming_a_fifo_socket_or_device_says_so(tmp_path: Path, kind: str) -> None:
    """`--db FIFO` was "no database 'FIFO.db' (... does not exist)": a made-up name for a file
    that is there and is no database."""
    import socket

    home = _home(tmp_path)
    odd = tmp_path / "odd"
    sock = None
    if kind == "a FIFO":
        os.mkfifo(odd)
    elif kind == "a socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(odd))
    else:
        odd = Path("/dev/null")
    try:
        for args in (("db", "status"), ("db", "check"), ("db", "backup")):
            result = CliRunner().invoke(cli, ["--home", str(home), *args, "--db", str(odd)])
            assert result.exit_code == EXIT_MISSING, (args, result.output)
            assert "Traceback" not in result.output
            assert f"is {kind} ({odd}), not a database file" in result.stderr
    finally:
        if sock is not None:
            sock.close()


@pytest.mark.parametrize("length", [256, 300])
def test_a_db_path_no_file_can_have_is_named_never_a_traceback(tmp_path: Path, length: int) -> None:
    """A part of a --db path over 255 bytes: every `db` command was an OSError traceback
    (ENAMETOOLONG from pathlib's is_file)."""
    home = _home(tmp_path)
    value = str(tmp_path / ("d" * length))
    for args in (("db", "status"), ("db", "check"), ("db", "backup"), ("db", "backups")):
        done = bastion(home, *args, "--db", value)
        assert done.returncode == EXIT_MISSING, done.stderr
        assert "Traceback" not in done.stderr
        assert "File name too long" in done.stderr
        assert "at most 255 bytes" in done.stderr


def test_db_copy_names_a_name_too_long_not_a_folder_to_chmod(tmp_path: Path) -> None:
    """`db copy` to or from a name no file can have (its own, or the -wal SQLite puts beside
    it) said "cannot create files in /tmp" and to `chmod 700 /tmp`."""
    home = _home(tmp_path)
    source = home / "bastion.db"
    for src, dst, beside in [
        (str(tmp_path / ("s" * 300)) + ".db", str(tmp_path / "out.db"), ""),
        (str(source), str(tmp_path / ("c" * 252)) + ".db", "-wal"),  # 255 bytes; -wal 259
    ]:
        done = bastion(home, "db", "copy", src, dst)
        assert done.returncode == 66, done.stderr  # StoreOpenError
        assert "Traceback" not in done.stderr
        assert "the name is too long for the file system" in done.stderr
        assert beside in done.stderr
        assert "chmod" not in done.stderr
        assert not Path(dst).exists()
