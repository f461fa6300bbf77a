"""Rebuilding a damaged full-text index when the disk refuses, and when the rebuild is killed.

A rebuild writes the whole index again, in one transaction, into the WAL. Each test here
damages ``logs_fts`` in a home on a small tmpfs it mounts (root), then meets one fault class
while the rebuild runs -- the disk full part-way (room to open, not to rebuild), a
read-only mount, a 0400 database, a 0500 home -- through each real path that rebuilds:
``bastion db reindex``, ``bastion db recover`` and the daemon (``bastion serve``, whose
``store.on_corrupt`` is "recover"). In each: the fault's own typed error and exit status
naming the cause, its fix and the command that retries (never "corrupt", never a
traceback), the database file byte for byte as it was, every row still there, nothing
quarantined and no backup put over it. Once the cause is fixed the same command mends it.

And ``kill -9`` of a ``db reindex`` at points before, inside and after its transaction: the
database opens, loses no row, and a second reindex mends it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from bastion.app import Home
from bastion.config import load_config
from bastion.domains.logs import LogRecord, LogsRepo
from bastion.store import Database
from tests.fsfaults import Mount, bastion, mounted_tmpfs, needs_root

EXIT_IO = 71
EXIT_PERMISSION = 73
LINES = 8000
#: A garbled structure record: the open-time quick_check finds it (FTS5's own words).
GARBLE = "UPDATE logs_fts_data SET block = x'00000000ffffffffffffffffffffffff' WHERE id = 10"
#: A line written with the index's trigger bypassed: only the full check's comparison sees it.
UNSEEN = (
    "DROP TRIGGER {trigger}; INSERT INTO logs (ts, level, source, stream, message) "
    "VALUES (1.0, 'info', 'svc', 'stdout', 'zzqqxx ghost'); {sql}"
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with LINES log lines (an index of a few MB to rebuild), settings and a
    verified backup taken before the last writes, closed."""
    cfg = load_config(tmp_path_factory.mktemp("fts-faults") / "home", env={})
    with Home.init(cfg) as home:
        repo = LogsRepo(home.db)
        repo.insert_batch(
            LogRecord(float(i), "info", f"svc{i % 3}", "stdout", f"line {i} alpha {i * 7919} ok")
            for i in range(LINES // 2)
        )
        home.backup()  # older than what follows: a restore would lose it
        repo.insert_batch(
            LogRecord(float(i), "info", f"svc{i % 3}", "stdout", f"line {i} alpha {i * 7919} ok")
            for i in range(LINES // 2, LINES)
        )
        for i in range(5):
            home.settings.set(f"k{i}", {"i": i})
    return cfg.home


def _damaged_copy(pristine: Path, home: Path, damage: str = GARBLE) -> None:
    shutil.copytree(pristine, home)
    conn = apsw.Connection(str(home / "bastion.db"))
    try:
        conn.execute(damage)
    finally:
        conn.close()


def _rows(db: Path) -> dict[str, int]:
    """Rows of the tables that hold data, read straight from the file (and its -wal), by a
    connection that removes the -wal and -shm it made when it closes."""
    conn = apsw.Connection(str(db))
    try:
        return {
            t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0])
            for t in ("logs", "settings")
        }
    finally:
        conn.close()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _nothing_quarantined(home: Path) -> None:
    quarantine = home / "quarantine"
    assert not quarantine.exists() or not any(quarantine.iterdir()), list(quarantine.iterdir())


def _refused(result: subprocess.CompletedProcess[str], status: int, *words: str) -> str:
    text = result.stdout + result.stderr
    assert result.returncode == status, f"exit {result.returncode}\n{text}"
    assert "Traceback" not in text, text
    assert "corrupt" not in text.lower(), text
    for word in words:
        assert word in text, f"{word!r} not in:\n{text}"
    return text


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture
def mnt(tmp_path: Path) -> Iterator[Mount]:
    needs_root()
    with mounted_tmpfs(tmp_path / "mnt", size="24m") as mount:
        yield mount


#: Each fault: how it is made on the mount, how it is undone, the exit status and words of
#: its error, and whether the process under test must obey file modes.
FAULTS = ["disk_full", "read_only_mount", "database_0400", "home_0500"]

#: Each path that rebuilds, and the retry its error names.
COMMANDS = {
    "serve": (("serve", "--port", "0"), "start bastion again"),
    "recover": (("db", "recover"), "bastion db recover --db bastion` again"),
    "reindex": (("db", "reindex"), "bastion db reindex --db bastion` again"),
}


def _make(fault: str, mnt: Mount, home: Path) -> tuple[int, str, bool]:
    db = home / "bastion.db"
    if fault == "disk_full":
        # Room for the open (its -shm and the first WAL pages), not for the rebuilt index.
        mnt.fill(leave=256 * 1024)
        return EXIT_IO, "disk full", False
    if fault == "read_only_mount":
        mnt.remount("ro")
        return EXIT_IO, "read-only", False
    if fault == "database_0400":
        db.chmod(0o400)
        return EXIT_PERMISSION, f"chmod 600 {db}", True
    home.chmod(0o500)
    return EXIT_PERMISSION, f"chmod 700 {home}", True


def _undo(fault: str, mnt: Mount, home: Path) -> None:
    if fault == "disk_full":
        mnt.unfill()
    elif fault == "read_only_mount":
        mnt.remount("rw")
    elif fault == "database_0400":
        (home / "bastion.db").chmod(0o600)
    else:
        home.chmod(0o700)


@pytest.mark.root
@pytest.mark.parametrize("fault", FAULTS)
def test_a_rebuild_the_disk_refuses_loses_nothing_and_names_the_fix(
    pristine: Path, mnt: Mount, fault: str
) -> None:
    """The three paths that rebuild a damaged index, each run on the fault: its own error
    naming the cause and the retry, the file as it was (a failed rebuild is one rolled-back
    transaction), nothing quarantined -- in particular the daemon does not start, where it
    recovered before: quarantined the file and put the older backup in its place (the 0400
    file: the rename of the file was allowed, its open was not), losing half the lines."""
    home = mnt.path / "home"
    _damaged_copy(pristine, home)
    db = home / "bastion.db"
    before, rows = _sha(db), _rows(db)
    status, cause, drop = _make(fault, mnt, home)
    try:
        for name, (args, retry) in COMMANDS.items():
            # A daemon that started (after a recovery) would run on: the timeout ends it.
            result = bastion(home, *args, drop_dac=drop, timeout=30 if name == "serve" else 90)
            # The same bytes: every row (read no other way here, so that the test itself
            # leaves no -wal or -shm for a 0500 home to lack).
            _nothing_quarantined(home)
            assert _sha(db) == before, f"{name} changed the file"
            text = _refused(result, status, cause, "cannot rebuild the full-text indexes", retry)
            assert "store.reindexed" not in text, name
    finally:
        _undo(fault, mnt, home)
    assert _sha(db) == before
    assert not Path(f"{db}-wal").exists()
    # The cause fixed, the same command mends it, in place: every row kept.
    report = json.loads(_ok(bastion(home, "db", "recover", "--json")))
    assert report["action"] == "reindex", report
    assert report["rebuilt"] == ["logs_fts"]
    assert _rows(db) == rows
    _nothing_quarantined(home)
    assert "integrity_check: ok" in _ok(bastion(home, "db", "check"))


# --- kill -9 in the middle of a rebuild ---------------------------------------------------

#: The real CLI (`python -m bastion db reindex`) in a child that SIGKILLs itself at a point
#: of the rebuild, found by SQLite's own hooks on every connection the command opens
#: (apsw.connection_hooks): at the first open; at the n-th change the rebuild makes to the
#: index's shadow tables (its transaction open, part-written into the WAL); when its commit
#: reached the WAL (before any checkpoint); at the check after it (its copy in the temp
#: schema). ``count`` runs to the end and prints how many changes the rebuild made.
KILLER = """
import os, runpy, signal, sys
import apsw

point, nth = sys.argv[1], int(sys.argv[2])
seen = {"changes": 0, "committed": False}

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def on_change(op, db, table, rowid):
    if db == "main" and table.startswith("logs_fts_"):
        seen["changes"] += 1
        if point == "rebuild" and seen["changes"] == nth:
            die()
    elif db == "temp" and point == "check" and seen["committed"]:
        die()

def on_commit(conn, db, pages):
    if seen["changes"]:
        seen["committed"] = True
        if point == "commit":
            die()
    return apsw.SQLITE_OK

def hook(conn):
    if point == "open":
        die()
    conn.set_update_hook(on_change)
    conn.set_wal_hook(on_commit)

apsw.connection_hooks.append(hook)
sys.argv = ["bastion", "db", "reindex"]
try:
    runpy.run_module("bastion", run_name="__main__")
finally:
    print("changes", seen["changes"], file=sys.stderr)
"""


def _killed_reindex(home: Path, point: str, nth: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update(BASTION_HOME=str(home), NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-c", KILLER, point, str(nth)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _changes_of_a_rebuild(pristine: Path, where: Path) -> int:
    _damaged_copy(pristine, where)
    done = _killed_reindex(where, "count")
    assert done.returncode == 0, done.stderr
    return int(done.stderr.rsplit("changes", 1)[1])


KILL_POINTS = [
    ("open", 0.0),
    ("rebuild", 0.0),  # its first change
    ("rebuild", 0.5),
    ("rebuild", 0.99),
    ("commit", 0.0),
    ("check", 0.0),
]


@pytest.mark.posix
@pytest.mark.parametrize(
    ("point", "fraction"), KILL_POINTS, ids=[f"{p}-{f}" for p, f in KILL_POINTS]
)
def test_kill_9_during_a_rebuild_loses_nothing_and_a_second_one_mends_it(
    pristine: Path, tmp_path: Path, point: str, fraction: float
) -> None:
    """Killed at each point: the file opens, holds every row it held, and a second
    `db reindex` mends the index (killed after the commit, the first one already had)."""
    total = _changes_of_a_rebuild(pristine, tmp_path / "measure")
    assert total > 100, total  # a rebuild of many changes: the middle is a middle
    home = tmp_path / "home"
    _damaged_copy(pristine, home)
    db = home / "bastion.db"
    rows = _rows(db)
    nth = max(1, int(total * fraction))
    killed = _killed_reindex(home, point, nth)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
    assert _rows(db) == rows
    with Database.open(db, name="bastion", create=False) as opened:
        assert opened.query("SELECT count(*) FROM logs") == [(rows["logs"],)]
    code = _ok(bastion(home, "db", "reindex", "--json"))
    assert json.loads(code)["check"]["ok"] is True
    assert _rows(db) == rows
    assert "integrity_check: ok" in _ok(bastion(home, "db", "check"))
    _nothing_quarantined(home)


# --- another process holding the write lock -----------------------------------------------

HOLDER = """
import sys, apsw
conn = apsw.Connection(sys.argv[1])
conn.execute("BEGIN IMMEDIATE")
print("held", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


def test_a_rebuild_another_process_keeps_waiting_is_busy_never_a_recovery(
    pristine: Path, tmp_path: Path
) -> None:
    """The daemon's start (``on_corrupt = "recover"``) finds the index damaged while another
    process holds the write lock past ``busy_timeout``: the start stops with StoreBusy naming
    the rebuild, and nothing is moved. Before, the failed rebuild fell through to the
    recovery, which quarantined the file that other process had open (its writes then went
    to the quarantined copy) and put the older backup in its place."""
    import dataclasses

    from bastion.errors import StoreBusy

    home = tmp_path / "home"
    _damaged_copy(pristine, home)
    db = home / "bastion.db"
    rows = _rows(db)
    cfg = load_config(home, env={})
    store = dataclasses.replace(cfg.store, on_corrupt="recover", busy_timeout_ms=2000)
    cfg = dataclasses.replace(cfg, store=store)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreBusy) as caught:
            Home.open(cfg).close()
        assert caught.value.message.startswith("cannot rebuild the full-text indexes: ")
        assert "start bastion again" in (caught.value.hint or "")
        _nothing_quarantined(home)
    finally:
        holder.communicate("", timeout=30)
    assert _rows(db) == rows
    with Home.open(cfg) as opened:  # the lock let go: rebuilt in place, every row kept
        assert opened.recovery is None
        assert [e.data["tables"] for e in opened.events.query(kind="store.reindexed").items] == [
            ["logs_fts"]
        ]
    assert _rows(db) == rows
    _nothing_quarantined(home)
