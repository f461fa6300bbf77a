"""Fault drills: ENOSPC, EIO and short writes at each write/sync call of a write transaction,
a checkpoint, a backup and a migration; then a kill -9 storm against four writer processes.

After each fault: the caller got a typed ``StoreError``; the reopened file passes
``integrity_check``; it holds exactly the transactions acknowledged before the fault.

Every drill runs twice: plaintext and encrypted (``db_key``): a fault under the cipher is the
same I/O fault, never a key error, never damage.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from bastion.config import StoreConfig
from bastion.errors import StoreError, StoreIOError
from bastion.store import Database, WriteTx, checkpoint, migrations
from bastion.store.backup import create_backup, list_backups, verify_backup
from bastion.store.crypt import DatabaseKey
from bastion.store.crypt.cipher import connect
from bastion.store.faults import Fault, FaultyVFS
from tests.helpers import wait_until
from tests.store.keyed import CHILD_KEY
from tests.store.opsfixtures import ITEMS_DDL, integrity

#: FULL so that commits sync the WAL: a write transaction then has sync calls to fail too.
DRILL = StoreConfig(synchronous="FULL")
ACKED = [f"acked-{i}" for i in range(30)]

FAULTS = [(Fault.ENOSPC, "write"), (Fault.EIO, "write"), (Fault.SHORT, "write")]
FAULTS += [(Fault.ENOSPC, "sync"), (Fault.EIO, "sync")]

pytestmark = pytest.mark.encrypted_rerun


@pytest.fixture
def vfs() -> Iterator[FaultyVFS]:
    v = FaultyVFS(f"drill-{uuid.uuid4().hex[:12]}")
    yield v
    v.close()


def _prepare(path: Path, vfs: FaultyVFS, key: DatabaseKey | None) -> Database:
    """A database on the faulty VFS with three acknowledged transactions of 10 rows each."""
    db = Database.open(path, DRILL, name="drill", vfs=vfs.vfs_name, key=key)
    db.write(lambda tx: tx.script(ITEMS_DDL))
    for start in range(0, 30, 10):
        db.write(
            lambda tx, s=start: tx.executemany(
                "INSERT INTO items(name, body) VALUES (?, ?)",
                [(ACKED[i], "b" * 300) for i in range(s, s + 10)],
            )
        )
    return db


def _names(path: Path, key: DatabaseKey | None) -> list[str]:
    conn = connect(str(path), key=key)
    try:
        return [str(r[0]) for r in conn.execute("SELECT name FROM items ORDER BY id")]
    finally:
        conn.close()


def _calls(
    tmp_path: Path,
    vfs: FaultyVFS,
    op: str,
    action: Callable[[Database], Any],
    key: DatabaseKey | None,
) -> int:
    """How many ``op`` calls ``action`` makes, measured on an identical scratch database."""
    scratch = tmp_path / f"count-{uuid.uuid4().hex[:6]}.db"
    db = _prepare(scratch, vfs, key)
    try:
        vfs.reset_counts()
        action(db)
        return vfs.count(op)  # type: ignore[arg-type]
    finally:
        db.close()


def _write_unit(db: Database) -> None:
    db.write(
        lambda tx: tx.executemany(
            "INSERT INTO items(name, body) VALUES (?, ?)",
            [(f"lost-{i}", "c" * 300) for i in range(20)],
        )
    )


def _drill(
    tmp_path: Path,
    vfs: FaultyVFS,
    fault: Fault,
    op: str,
    action: Callable[[Database], Any],
    *,
    file_suffix: str | None = None,
    after: Callable[[Path], None] | None = None,
    key: DatabaseKey | None = None,
) -> int:
    calls = _calls(tmp_path, vfs, op, action, key) if file_suffix is None else 0
    if file_suffix is not None:
        scratch = tmp_path / "count-suffix.db"
        db = _prepare(scratch, vfs, key)
        try:
            vfs.arm(fault, op=op, at=10**9, file_suffix=file_suffix)  # count only these files
            action(db)
            calls = vfs.count(op)  # type: ignore[arg-type]
            vfs.disarm()
        finally:
            db.close()
    assert calls >= 1, f"the operation made no {op} call to fail"
    for n in range(1, calls + 1):
        path = tmp_path / f"drill-{n}.db"
        db = _prepare(path, vfs, key)
        vfs.fired.clear()
        vfs.arm(fault, op=op, at=n, file_suffix=file_suffix)  # type: ignore[arg-type]
        try:
            with pytest.raises(StoreError) as caught:
                action(db)
            assert vfs.fired, f"call {n} of {calls} never happened"
            assert (
                isinstance(caught.value, StoreIOError)
                or "I/O" in caught.value.message
                or ("disk" in caught.value.message)
            ), caught.value
        finally:
            vfs.disarm()
            db.close()
        assert integrity(path, key) == ["ok"], f"{fault.value} at {op} {n}/{calls}"
        assert _names(path, key) == ACKED, f"{fault.value} at {op} {n}/{calls}"
        if after is not None:
            after(path)
    return calls


@pytest.mark.parametrize(("fault", "op"), FAULTS, ids=[f"{f.value}-{o}" for f, o in FAULTS])
def test_fault_at_each_call_of_a_write_transaction(
    tmp_path: Path, vfs: FaultyVFS, fault: Fault, op: str, db_key: DatabaseKey | None
) -> None:
    _drill(tmp_path, vfs, fault, op, _write_unit, key=db_key)


@pytest.mark.parametrize(("fault", "op"), FAULTS, ids=[f"{f.value}-{o}" for f, o in FAULTS])
def test_fault_at_each_call_of_a_checkpoint(
    tmp_path: Path, vfs: FaultyVFS, fault: Fault, op: str, db_key: DatabaseKey | None
) -> None:
    def run(db: Database) -> None:
        result = checkpoint(db, "TRUNCATE")
        if result.busy:  # pragma: no cover - nothing else holds the WAL here
            raise AssertionError("checkpoint was busy")

    _drill(tmp_path, vfs, fault, op, run, key=db_key)


@pytest.mark.parametrize(("fault", "op"), FAULTS, ids=[f"{f.value}-{o}" for f, o in FAULTS])
def test_fault_at_each_call_of_a_backup(
    tmp_path: Path, vfs: FaultyVFS, fault: Fault, op: str, db_key: DatabaseKey | None
) -> None:
    backups = tmp_path / "backups"

    def run(db: Database) -> None:
        # The counting run (on a scratch copy) writes its backup elsewhere.
        counting = db.path.name.startswith("count")
        create_backup(db, tmp_path / "count-backups" if counting else backups, step_pages=2)

    def nothing_left(_path: Path) -> None:
        assert list_backups(backups) == []
        assert not [p for p in backups.iterdir() if p.name.endswith(".tmp")]

    # Only the backup's own file fails: the live database is never written by a backup.
    _drill(tmp_path, vfs, fault, op, run, file_suffix=".tmp", after=nothing_left, key=db_key)
    db = Database.open(tmp_path / "drill-1.db", name="drill", key=db_key)
    try:
        good = create_backup(db, backups)
    finally:
        db.close()
    assert verify_backup(good.path, deep=True, key=db_key).verified


@pytest.mark.parametrize(("fault", "op"), FAULTS, ids=[f"{f.value}-{o}" for f, o in FAULTS])
def test_fault_at_each_call_of_a_migration(
    tmp_path: Path, vfs: FaultyVFS, fault: Fault, op: str, db_key: DatabaseKey | None
) -> None:
    namespace = migrations.Namespace(
        "drill",
        [
            migrations.Migration.sql(
                "0001_extra",
                "CREATE TABLE extra(id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
                "INSERT INTO extra(id, name) SELECT id, name FROM items;"
                "CREATE INDEX extra_name ON extra(name);",
            )
        ],
    )

    def run(db: Database) -> None:
        migrations.Migrator(db, None).migrate([namespace])

    def not_applied(path: Path) -> None:
        conn = connect(str(path), key=db_key)
        try:
            tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_schema")}
            assert "extra" not in tables, "a failed migration left its table behind"
            if "schema_migrations" in tables:
                assert conn.execute(
                    "SELECT count(*) FROM schema_migrations WHERE namespace = 'drill'"
                ).fetchall() == [(0,)]
        finally:
            conn.close()

    _drill(tmp_path, vfs, fault, op, run, after=not_applied, key=db_key)


# --- kill -9 storm -------------------------------------------------------------------------

WRITER = CHILD_KEY + textwrap.dedent(
    """
    import sys
    from bastion.config import StoreConfig
    from bastion.store import Database
    path, wid, ack = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    db = Database.open(path, StoreConfig(busy_timeout_ms=60000), name="storm", key=KEY)
    seq = int(db.scalar("SELECT coalesce(max(seq), 0) FROM acks WHERE writer = ?", (wid,))) + 1
    with open(ack, "a", buffering=1) as out:
        while True:
            db.write(lambda tx, s=seq: tx.execute(
                "INSERT INTO acks(writer, seq, pad) VALUES (?, ?, randomblob(300))", (wid, s)))
            out.write(f"{seq}\\n")  # acknowledged: the commit returned
            seq += 1
    """
)

BACKUPER = CHILD_KEY + textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from bastion.config import StoreConfig
    from bastion.store import Database
    from bastion.store.backup import create_backup
    db = Database.open(sys.argv[1], StoreConfig(busy_timeout_ms=60000), name="storm", key=KEY)
    while True:
        create_backup(db, Path(sys.argv[2]), step_pages=8)
    """
)


MIGRATOR = CHILD_KEY + textwrap.dedent(
    """
    import itertools, sys, time
    from bastion.config import StoreConfig
    from bastion.errors import StoreError
    from bastion.store import Database
    from bastion.store.migrations import Migration, Migrator, Namespace
    db = Database.open(sys.argv[1], StoreConfig(busy_timeout_ms=60000), name="storm", key=KEY)
    try:
        done = db.query("SELECT namespace FROM schema_migrations WHERE namespace LIKE 'storm%'")
    except StoreError:
        done = []
    start = 1 + max([int(ns[5:]) for (ns,) in done] or [0])
    for n in itertools.count(start):
        ns = Namespace(f"storm{n}", [Migration.sql("0001_copy", (
            f"CREATE TABLE mig_{n}(id INTEGER PRIMARY KEY, seq INTEGER);"
            f"INSERT INTO mig_{n}(seq) SELECT seq FROM acks LIMIT 200;"
            f"CREATE INDEX mig_{n}_seq ON mig_{n}(seq);"))])
        Migrator(db, None).migrate([ns])
        time.sleep(0.25)  # pacing, not waiting: a migration now and then, as in real life
    """
)


def _acks(path: Path) -> list[int]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [int(line) for line in text.split("\n")[:-1] if line]  # complete lines only


@pytest.mark.slow
@pytest.mark.posix
def test_kill_9_storm_loses_no_acknowledged_write(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    db_path = tmp_path / "storm.db"
    backups = tmp_path / "backups"
    setup = Database.open(db_path, name="storm", key=db_key)
    setup.write(
        lambda tx: tx.script(
            "CREATE TABLE acks(writer INTEGER NOT NULL, seq INTEGER NOT NULL, pad BLOB, "
            "UNIQUE(writer, seq))"
        )
    )
    setup.close()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    backuper = tmp_path / "backuper.py"
    backuper.write_text(BACKUPER)
    migrator = tmp_path / "migrator.py"
    migrator.write_text(MIGRATOR)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}

    def spawn(wid: int) -> subprocess.Popen[bytes]:
        if wid == 5:
            return subprocess.Popen([sys.executable, str(migrator), str(db_path)], env=env)
        if wid == 4:
            return subprocess.Popen(
                [sys.executable, str(backuper), str(db_path), str(backups)], env=env
            )
        ack = tmp_path / f"ack-{wid}.txt"
        return subprocess.Popen(
            [sys.executable, str(script), str(db_path), str(wid), str(ack)], env=env
        )

    # The encrypted run kills fewer times: the kill points are the same I/O under the cipher,
    # the plaintext run's 200 carry the count (this storm is the suite's longest test).
    storm_kills = 200 if db_key is None else 80
    procs = {wid: spawn(wid) for wid in range(6)}
    started_at = {wid: 0 for wid in range(4)}
    rnd = random.Random(20261123)
    kills = 0
    try:
        while kills < storm_kills:
            # One kill in ten lands on the process taking backups, one in ten on the one
            # running migrations, the rest on the writers.
            wid = {9: 4, 4: 5}.get(kills % 10, -1)
            if wid == -1:
                # Kill mid-stream: a writer whose current incarnation has acknowledged writes
                # and is writing more (restarted ones boot in parallel meanwhile).
                def ready() -> list[int]:
                    return [
                        w for w in range(4) if len(_acks(tmp_path / f"ack-{w}.txt")) > started_at[w]
                    ]

                wid = rnd.choice(wait_until(ready, timeout=120, what="a writer to acknowledge"))
            procs[wid].send_signal(signal.SIGKILL)
            procs[wid].wait()
            kills += 1
            if wid < 4:
                started_at[wid] = len(_acks(tmp_path / f"ack-{wid}.txt"))
            procs[wid] = spawn(wid)
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert kills == storm_kills
    assert integrity(db_path, db_key) == ["ok"]
    conn = connect(str(db_path), key=db_key)
    try:
        for wid in range(4):
            acked = set(_acks(tmp_path / f"ack-{wid}.txt"))
            assert acked, f"writer {wid} never acknowledged a write"
            stored = {
                int(r[0]) for r in conn.execute("SELECT seq FROM acks WHERE writer = ?", (wid,))
            }
            missing = acked - stored
            assert not missing, f"writer {wid}: acknowledged writes lost: {sorted(missing)[:10]}"
    finally:
        conn.close()
    # Migrations are all-or-nothing with their history row, however they were interrupted.
    conn = connect(str(db_path), key=db_key)
    try:
        tables = {
            str(r[0])
            for r in conn.execute("SELECT name FROM sqlite_schema WHERE name GLOB 'mig_[0-9]*'")
        }
        recorded = {
            "mig_" + str(r[0])[5:]
            for r in conn.execute(
                "SELECT namespace FROM schema_migrations WHERE namespace LIKE 'storm%'"
            )
        }
    finally:
        conn.close()
    assert recorded, "no migration completed during the storm"
    assert {t for t in tables if not t.endswith("_seq")} == recorded
    # Backups cut short by SIGKILL leave no manifest; every backup that has one is good.
    finished = [b for b in list_backups(backups) if b.manifest is not None]
    assert finished, "no backup completed during the storm"
    for info in finished:
        assert verify_backup(info.path, deep=True, key=db_key).verified, info.path


@pytest.mark.parametrize(
    ("how", "group_commit"), [("write", "never"), ("transaction", "never"), ("write", "always")]
)
def test_a_commit_the_disk_refuses_in_turn_is_named_and_undone(
    tmp_path: Path, vfs: FaultyVFS, db_key: DatabaseKey | None, how: str, group_commit: str
) -> None:
    """Callers taking the writer in turn (group commit off) by ``write`` and by ``with
    transaction()``, and a group-commit leader's group of one: the COMMIT's write to the WAL
    fails. The caller gets the disk's refusal naming the file and the commit (SQLite's error
    as its cause), the unit's compensations run, nothing of it is kept, and the next write
    goes through."""
    path = tmp_path / "turns.db"
    config = StoreConfig(synchronous="NORMAL", group_commit=group_commit)  # type: ignore[arg-type]
    db = Database.open(path, config, name="turns", vfs=vfs.vfs_name, key=db_key)
    try:
        db.write(lambda tx: tx.script(ITEMS_DDL))
        undone: list[str] = []

        def unit(tx: WriteTx) -> None:
            tx.on_rollback(lambda: undone.append("lost"))
            tx.execute("INSERT INTO items(name, body) VALUES ('lost', 'b')")

        vfs.arm(Fault.EIO, op="write", file_suffix="-wal")
        try:
            with pytest.raises(StoreIOError) as caught:
                if how == "write":
                    db.write(unit)
                else:
                    with db.transaction() as tx:
                        unit(tx)
            assert vfs.fired
        finally:
            vfs.disarm()
        assert caught.value.details["path"] == str(path)
        assert f"I/O error on {path}" in caught.value.message
        assert "(while committing: " in caught.value.message
        assert isinstance(caught.value.__cause__, apsw.IOError)
        assert undone == ["lost"]
        db.write(lambda tx: tx.execute("INSERT INTO items(name, body) VALUES ('kept', 'b')"))
        assert [r[0] for r in db.query("SELECT name FROM items")] == ["kept"]
    finally:
        db.close()


def test_a_read_only_open_reads_through_the_vfs_it_is_given(
    tmp_path: Path, vfs: FaultyVFS, db_key: DatabaseKey | None
) -> None:
    """``Database.open_readonly(vfs=...)``: its connections use that VFS, as a normal open's
    do (a device that fails reads is met by the read-only reader too)."""
    path = tmp_path / "ro.db"
    with Database.open(path, name="ro", key=db_key) as db:
        db.write(lambda tx: tx.script(ITEMS_DDL))
        db.write(lambda tx: tx.execute("INSERT INTO items(name, body) VALUES ('a', 'b')"))
    ro = Database.open_readonly(path, name="ro", vfs=vfs.vfs_name, key=db_key)
    try:
        vfs.arm(Fault.EIO, op="read", file_suffix=".db")
        try:
            with pytest.raises(StoreIOError):
                ro.query("SELECT name FROM items")
            assert vfs.fired
        finally:
            vfs.disarm()
        assert ro.query("SELECT name FROM items") == [("a",)]
    finally:
        ro.close()


def test_a_side_connection_is_opened_the_way_the_databases_own_are(
    tmp_path: Path, vfs: FaultyVFS, db_key: DatabaseKey | None
) -> None:
    """The extra connection store/ modules ask for (the WAL archiver's): the database's VFS,
    key and synchronous setting."""
    config = StoreConfig(synchronous="NORMAL")
    with Database.open(tmp_path / "s.db", config, vfs=vfs.vfs_name, key=db_key) as db:
        db.write(lambda tx: tx.execute("CREATE TABLE t(x)"))
        side = db._side_connection()
        try:
            writer = db._driver_connection()
            assert side.vfsname("main") == writer.vfsname("main")
            assert side.pragma("synchronous") == writer.pragma("synchronous") == 1
            assert side.execute("SELECT count(*) FROM t").fetchall() == [(0,)]
        finally:
            side.close()
