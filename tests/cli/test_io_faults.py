"""An I/O or permission error is not corruption (issue #14 §1), on real filesystems.

Each test builds a home on a small tmpfs it mounts itself, commits rows through the real CLI,
then meets one fault class: the disk full during CLI writes, the daemon started on a full
disk, ``db recover`` on a full disk, a read-only mount, a 0500 home, a 0400 database. In each:
the command fails with the typed error and its own exit status (never "corrupt", never a
traceback), reads keep answering, nothing is quarantined, no file is left with a wrong mode,
and after the operator fixes the cause every committed row is there and the next write
succeeds.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from bastion.app import Home
from bastion.config import load_config
from tests.fsfaults import Mount, bastion, mounted_tmpfs, needs_root

pytestmark = pytest.mark.root

EXIT_IO = 71  # StoreIOError and its disk-full / read-only kinds
EXIT_PERMISSION = 73  # StorePermissionError
EXIT_MISSING = 66  # StoreMissing


@pytest.fixture
def mnt(tmp_path: Path) -> Iterator[Mount]:
    needs_root()
    with mounted_tmpfs(tmp_path / "mnt", size="2m") as mount:
        yield mount


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _refused(result: subprocess.CompletedProcess[str], status: int, *words: str) -> str:
    """The command failed with ``status`` and a clean error (no traceback) naming ``words``."""
    text = result.stdout + result.stderr
    assert result.returncode == status, f"exit {result.returncode}\n{text}"
    assert "Traceback" not in text, text
    assert "corrupt" not in text.lower(), text
    for word in words:
        assert word in text, f"{word!r} not in:\n{text}"
    return text


def _committed(home: Path, rows: int) -> list[str]:
    """A home with ``rows`` settings committed (and a verified backup after the first half,
    so a recovery would have something older to put back over the newer rows)."""
    keys = []
    with Home.init(load_config(home, env={})) as h:
        for i in range(rows):
            if i == rows // 2:
                h.backup()
            h.settings.set(f"k{i}", {"i": i, "pad": "x" * 200})
            keys.append(f"k{i}")
    return keys


def _settings_in_file(db: Path) -> dict[str, int]:
    """Every settings row, read straight from the file (and its -wal), no bastion code."""
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return {
            str(k): json.loads(str(v))["i"]
            for k, v in conn.execute("SELECT key, value FROM settings WHERE key LIKE 'k%'")
        }
    finally:
        conn.close()


def _all_there(home: Path, keys: list[str]) -> None:
    got = _settings_in_file(home / "bastion.db")
    assert sorted(got) == sorted(keys), f"lost: {set(keys) - set(got)}"
    listed = json.loads(_ok(bastion(home, "settings", "list", "--json")))
    assert {s["key"] for s in listed} >= set(keys)


def _nothing_quarantined(home: Path) -> None:
    quarantine = home / "quarantine"
    assert not quarantine.exists() or not any(quarantine.iterdir()), list(quarantine.iterdir())


def _no_stray_files(home: Path) -> None:
    """No temp files of a half-done recovery; every file bastion wrote is 0600."""
    for path in home.rglob("*"):
        if path.is_file():
            assert not path.name.endswith(".tmp"), path
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == 0o600, f"{path} has mode {mode:04o}"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- full disk ------------------------------------------------------------------------


def test_full_disk_during_cli_writes(mnt: Mount) -> None:
    home = mnt.path / "home"
    keys = _committed(home, 6)
    mnt.fill()

    text = _refused(
        bastion(home, "settings", "set", "k-new", "1"), EXIT_IO, "disk full", str(mnt.path)
    )
    assert "hint:" in text
    _refused(bastion(home, "db", "backup"), EXIT_IO, "disk full")
    # Reads keep answering on the full disk.
    assert json.loads(_ok(bastion(home, "settings", "get", "k5", "--json")))["value"]["i"] == 5
    assert "database:" in _ok(bastion(home, "db", "status"))
    assert "ok" in _ok(bastion(home, "db", "check"))
    _nothing_quarantined(home)

    mnt.unfill()
    _all_there(home, keys)
    _ok(bastion(home, "settings", "set", "k-new", '{"i": 99}'))
    _all_there(home, [*keys, "k-new"])
    _no_stray_files(home)


def test_disk_filling_up_during_a_cli_write(mnt: Mount) -> None:
    """The open fits, the write does not: SQLite reports SQLITE_FULL half-way through the
    transaction, which is rolled back whole."""
    home = mnt.path / "home"
    keys = _committed(home, 4)
    mnt.fill(leave=64 * 1024)  # room for the -shm and a little WAL, not for 110 KB more
    # Numbers, not one long string: the credential check on a setting's strings is slow on
    # a 100 KB string (not what this test is about).
    big = json.dumps({"i": 1, "pad": list(range(16_000))})  # under the 128 KiB argv limit

    _refused(bastion(home, "settings", "set", "k-big", big), EXIT_IO, "disk full")
    assert "k-big" not in _settings_in_file(home / "bastion.db")
    _nothing_quarantined(home)

    mnt.unfill()
    _all_there(home, keys)
    _ok(bastion(home, "settings", "set", "k-big", big))
    _all_there(home, [*keys, "k-big"])
    _no_stray_files(home)


def test_daemon_started_on_a_full_disk_quarantines_nothing(mnt: Mount) -> None:
    """``bastion serve`` (store.on_corrupt = "auto", so it would recover a damaged file) on a
    full disk: a typed refusal, the healthy database untouched, no backup put over it."""
    home = mnt.path / "home"
    keys = _committed(home, 6)  # k3..k5 were committed after the backup
    before = _sha(home / "bastion.db")
    mnt.fill()

    _refused(bastion(home, "serve", "--port", "0", timeout=60), EXIT_IO, "disk full")
    _nothing_quarantined(home)
    assert _sha(home / "bastion.db") == before

    mnt.unfill()
    _all_there(home, keys)
    _no_stray_files(home)


def test_db_recover_on_a_full_disk_moves_nothing(mnt: Mount) -> None:
    home = mnt.path / "home"
    keys = _committed(home, 6)
    before = _sha(home / "bastion.db")
    mnt.fill()

    # Healthy: the check runs read-only and says so; nothing to do.
    assert "nothing to do" in _ok(bastion(home, "db", "recover"))
    # Forced: it needs room for the replacement and the salvage first, and says how much.
    _refused(bastion(home, "db", "recover", "--force"), EXIT_IO, "needs", "Nothing was moved")
    _nothing_quarantined(home)
    assert _sha(home / "bastion.db") == before

    mnt.unfill()
    _all_there(home, keys)
    _no_stray_files(home)


def test_db_recover_of_a_damaged_file_on_a_full_disk_waits_for_space(mnt: Mount) -> None:
    """A really damaged database on a full disk: recovery refuses before moving anything;
    once there is room it quarantines, restores and writes only 0600 files."""
    home = mnt.path / "home"
    _committed(home, 6)
    db = home / "bastion.db"
    data = bytearray(db.read_bytes())
    page = 4096
    data[3 * page : 3 * page + 64] = os.urandom(64)  # a b-tree page of the tables
    db.write_bytes(bytes(data))
    before = _sha(db)
    mnt.fill()

    _refused(bastion(home, "db", "recover"), EXIT_IO, "Nothing was moved")
    _nothing_quarantined(home)
    assert _sha(db) == before  # the damaged file is still the live one, as it was

    mnt.unfill()
    old_umask = os.umask(0o022)  # the files recovery writes are 0600 whatever the umask
    try:
        report = json.loads(_ok(bastion(home, "db", "recover", "--json")))
    finally:
        os.umask(old_umask)
    assert report["recovered"] is True
    assert report["placed"] == "backup"
    qdir = Path(report["quarantine_dir"])
    for path in qdir.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    _no_stray_files(home)


# --- read-only media ------------------------------------------------------------------


def test_read_only_mount(mnt: Mount) -> None:
    home = mnt.path / "home"
    keys = _committed(home, 4)
    mnt.remount("ro")

    _refused(
        bastion(home, "settings", "set", "k-new", "1"),
        EXIT_IO,
        "read-only",
        f"mount -o remount,rw {mnt.path}",
    )
    assert json.loads(_ok(bastion(home, "settings", "get", "k3", "--json")))["value"]["i"] == 3
    assert "database:" in _ok(bastion(home, "db", "status"))
    assert "ok" in _ok(bastion(home, "db", "check"))
    _refused(bastion(home, "serve", "--port", "0", timeout=60), EXIT_IO, "read-only")

    mnt.remount("rw")
    _nothing_quarantined(home)
    _all_there(home, keys)
    _ok(bastion(home, "settings", "set", "k-new", '{"i": 1}'))
    _no_stray_files(home)


# --- permissions ----------------------------------------------------------------------


def test_home_mode_0500(mnt: Mount) -> None:
    """The home directory is 0500: SQLite cannot create -wal/-shm in it."""
    home = mnt.path / "home"
    keys = _committed(home, 4)
    home.chmod(0o500)
    try:
        _refused(
            bastion(home, "settings", "set", "k-new", "1", drop_dac=True),
            EXIT_PERMISSION,
            str(home),
            "chmod 700",
        )
        got = bastion(home, "settings", "get", "k3", "--json", drop_dac=True)
        assert json.loads(_ok(got))["value"]["i"] == 3
        assert "database:" in _ok(bastion(home, "db", "status", drop_dac=True))
        _refused(bastion(home, "db", "recover", "--force", drop_dac=True), EXIT_PERMISSION)
    finally:
        home.chmod(0o700)
    _nothing_quarantined(home)
    _all_there(home, keys)
    _ok(bastion(home, "settings", "set", "k-new", '{"i": 1}', drop_dac=True))
    _no_stray_files(home)


@pytest.mark.parametrize("leftovers", ["none", "empty", "0400"])
def test_database_mode_0400(mnt: Mount, leftovers: str) -> None:
    """A write refused because the database is 0400 leaves no 0400 -wal/-shm behind: once
    the operator fixes the file's mode, the next write succeeds. ``leftovers``: companions
    already beside the file: none (a clean close), empty ones (what a failed open on a full
    disk leaves), or 0400 ones (what a refused write left before this was fixed)."""
    home = mnt.path / "home"
    keys = _committed(home, 4)
    db = home / "bastion.db"
    wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
    if leftovers == "empty":
        wal.write_bytes(b"")
        shm.write_bytes(b"abc")
    elif leftovers == "0400":
        wal.write_bytes(b"")
        shm.write_bytes(b"\0" * 32768)
    for companion in (wal, shm):
        if companion.exists():
            companion.chmod(0o400 if leftovers == "0400" else 0o600)
    db.chmod(0o400)

    _refused(
        bastion(home, "settings", "set", "k-new", "1", drop_dac=True),
        EXIT_PERMISSION,
        "mode 0400",
        f"chmod 600 {db}",
    )
    got = bastion(home, "settings", "get", "k3", "--json", drop_dac=True)
    assert json.loads(_ok(got))["value"]["i"] == 3
    assert "database:" in _ok(bastion(home, "db", "status", drop_dac=True))
    assert "ok" in _ok(bastion(home, "db", "check", drop_dac=True))
    if leftovers != "0400":  # nothing bastion did gave a companion the database's mode
        for companion in (wal, shm):
            if companion.exists():
                assert stat.S_IMODE(companion.stat().st_mode) == 0o600, companion

    db.chmod(0o600)  # what the error's hint says to run
    _ok(bastion(home, "settings", "set", "k-new", '{"i": 1}', drop_dac=True))
    _nothing_quarantined(home)
    _all_there(home, [*keys, "k-new"])
    _no_stray_files(home)
