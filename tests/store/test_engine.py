"""The store core against real files: posture, bad files, concurrency, group commit.

Every test that opens a database runs twice: plaintext and encrypted (``open_database``,
``db_key``; tests/conftest.py)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

from bastion import _platform
from bastion.config import StoreConfig
from bastion.errors import (
    Conflict,
    DatabaseNotEncrypted,
    NotADatabase,
    NotFound,
    ReferenceViolation,
    StoreBusy,
    StoreClosed,
    StoreError,
    StorePostureError,
)
from bastion.store import Database, ReadTx, WriteTx
from bastion.store.crypt import DatabaseKey
from bastion.store.crypt.cipher import connect
from tests.helpers import wait_until
from tests.store.keyed import CHILD_KEY, OpenDatabase

pytestmark = pytest.mark.encrypted_rerun


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def db(open_database: OpenDatabase, tmp_path: Path) -> Database:
    database = open_database(tmp_path / "t.db")
    database.write(
        lambda tx: tx.execute("CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    )
    database.write(lambda tx: tx.execute("INSERT INTO c VALUES (1, 0)"))
    yield database
    database.close()


def test_posture_is_read_back(open_database: OpenDatabase, tmp_path: Path) -> None:
    with open_database(
        tmp_path / "p.db", StoreConfig(synchronous="FULL", busy_timeout_ms=7000)
    ) as db:
        assert db.posture.journal_mode == "WAL"
        assert db.posture.synchronous == "FULL"
        assert db.posture.foreign_keys is True
        assert db.posture.busy_timeout_ms == 7000
        key = db.key
    # The WAL mode is persistent in the file: a raw connection reads it back too.
    raw = connect(str(tmp_path / "p.db"), key=key)
    assert raw.pragma("journal_mode") == "wal"
    raw.close()
    assert (tmp_path / "p.db").stat().st_mode & 0o777 == 0o600


@pytest.mark.plaintext_only(
    reason="the cipher is SQLite3 Multiple Ciphers' VFS shim over the default VFS; SQLite's "
    "own unix-dotfile VFS (the stand-in for a filesystem without mmap) has no cipher to key"
)
def test_posture_mismatch_names_the_pragma(open_database: OpenDatabase, tmp_path: Path) -> None:
    # SQLite's "unix-dotfile" VFS has no shared-memory methods, like a filesystem that cannot
    # mmap: SQLite then refuses WAL and silently keeps the rollback journal.
    with pytest.raises(StorePostureError) as info:
        open_database(tmp_path / "n.db", vfs="unix-dotfile")
    assert info.value.details["pragma"] == "journal_mode"
    assert info.value.details["wanted"] == "wal"
    assert info.value.details["got"] == "delete"
    assert "journal_mode" in info.value.message


def test_non_sqlite_file_is_refused_untouched(open_database: OpenDatabase, tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 50)
    before = _digest(path)
    with pytest.raises(NotADatabase) as info:
        open_database(path)
    assert str(path) in info.value.message
    assert _digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_truncated_file_is_refused_untouched(open_database: OpenDatabase, tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    with open_database(path) as database:
        database.write(lambda tx: tx.execute("CREATE TABLE big(x TEXT)"))
        database.write(
            lambda tx: tx.executemany("INSERT INTO big VALUES (?)", [("x" * 500,)] * 200)
        )
        key = database.key
    raw = connect(str(path), key=key)
    raw.pragma("wal_checkpoint", "TRUNCATE")
    raw.close()
    Path(str(path) + "-wal").unlink(missing_ok=True)
    Path(str(path) + "-shm").unlink(missing_ok=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    before = _digest(path)
    with pytest.raises(NotADatabase) as info:
        open_database(path)
    assert "truncated" in info.value.message
    assert _digest(path) == before


def test_header_only_garbage_is_refused(
    open_database: OpenDatabase, tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    path = tmp_path / "g.db"
    path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 64)
    before = _digest(path)
    # With a key, SQLite's header string says "a plaintext file": refused as not encrypted.
    with pytest.raises(NotADatabase if db_key is None else DatabaseNotEncrypted):
        open_database(path)
    assert _digest(path) == before


def _increment(tx: WriteTx) -> None:
    n = tx.scalar("SELECT n FROM c WHERE id = 1")
    tx.execute("UPDATE c SET n = ? WHERE id = 1", (n + 1,))


def test_four_threads_read_modify_write_exact(db: Database) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(2000):
                db.write(_increment)
        except BaseException as err:  # collected: a thread's exception would be lost
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert db.scalar("SELECT n FROM c WHERE id = 1") == 8000


_PROCESS_WORKER = CHILD_KEY + textwrap.dedent(
    """
    import sys
    from bastion.store import Database
    path, count = sys.argv[1], int(sys.argv[2])
    busy = 0
    with Database.open(path, key=KEY) as db:
        def inc(tx):
            n = tx.scalar("SELECT n FROM c WHERE id = 1")
            tx.execute("UPDATE c SET n = ? WHERE id = 1", (n + 1,))
        for _ in range(count):
            db.write(inc)
    print("done")
    """
)


@pytest.mark.posix
def test_four_processes_read_modify_write_exact(db: Database, tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(_PROCESS_WORKER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(db.path), "2000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=240) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == "done"
        assert "Busy" not in err
        assert "locked" not in err
    assert db.scalar("SELECT n FROM c WHERE id = 1") == 8000


def _hold_writer(db: Database) -> tuple[threading.Event, threading.Event]:
    """Queue a unit that blocks the writer so the next units are grouped together."""
    entered, release = threading.Event(), threading.Event()

    def blocker(tx: WriteTx) -> None:
        entered.set()
        release.wait(30)

    threading.Thread(target=db.write, args=(blocker,), daemon=True).start()
    assert entered.wait(10)
    return entered, release


@pytest.mark.parametrize("mode", ["always", "never"])
def test_group_commit_isolates_the_failing_unit(
    open_database: OpenDatabase, tmp_path: Path, mode: str
) -> None:
    """Grouped ("always"; the default under synchronous=FULL) or one transaction each
    ("never"; the default under NORMAL): the unit that raises is rolled back alone, with its
    compensation run, and the others are durable."""
    database = open_database(tmp_path / "g.db", StoreConfig(group_commit=mode))  # type: ignore[arg-type]
    database.write(lambda tx: tx.execute("CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER)"))
    commits: list[int] = []

    def count_commit() -> bool:
        commits.append(1)
        return False  # let it commit

    database._driver_connection().set_commit_hook(count_commit)
    _, release = _hold_writer(database)
    side_file = tmp_path / "attachment.bin"
    compensated = threading.Event()
    outcomes: dict[str, object] = {}

    def good(i: int) -> None:
        outcomes[f"good{i}"] = database.write(
            lambda tx: tx.insert("INSERT INTO c(n) VALUES (?)", (100 + i,))
        )

    def bad() -> None:
        def unit(tx: WriteTx) -> None:
            side_file.write_bytes(b"file written for the row")
            tx.on_rollback(lambda: (side_file.unlink(), compensated.set()))
            tx.execute("INSERT INTO c(n) VALUES (?)", (999,))
            raise RuntimeError("unit failed after its insert")

        try:
            database.write(unit)
        except RuntimeError as err:
            outcomes["bad"] = err

    threads = [threading.Thread(target=good, args=(i,)) for i in range(3)]
    threads.insert(1, threading.Thread(target=bad))
    for t in threads:
        t.start()
    if mode == "always":
        # All four queue behind the blocker; releasing it lets the writer take them as one group.
        wait_until(lambda: len(database._pending) == 4, what="four queued units")
    release.set()
    for t in threads:
        t.join()
    try:
        assert isinstance(outcomes["bad"], RuntimeError)
        assert compensated.is_set()
        assert not side_file.exists()
        values = sorted(row[0] for row in database.query("SELECT n FROM c WHERE id > 0"))
        assert values == [100, 101, 102]
        # the blocker's transaction, then the group (one COMMIT) or three of their own
        assert len(commits) == (2 if mode == "always" else 4)
        # durable: a fresh connection sees them
        raw = connect(str(database.path), key=database.key)
        assert sorted(r[0] for r in raw.execute("SELECT n FROM c")) == [100, 101, 102]
        raw.close()
    finally:
        database.close()


def test_group_commit_is_the_default_only_when_commits_are_fsyncs(
    open_database: OpenDatabase, tmp_path: Path
) -> None:
    with open_database(tmp_path / "n.db") as normal:
        assert normal._group_commit is False
    with open_database(tmp_path / "f.db", StoreConfig(synchronous="FULL")) as full:
        assert full._group_commit is True


def test_multi_step_write_failure_leaves_no_partial_rows(db: Database) -> None:
    db.write(lambda tx: tx.execute("CREATE TABLE parent(id INTEGER PRIMARY KEY)"))
    db.write(
        lambda tx: tx.execute(
            "CREATE TABLE child(id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent(id))"
        )
    )

    def two_steps(tx: WriteTx) -> None:
        tx.execute("INSERT INTO parent(id) VALUES (1)")
        tx.execute("INSERT INTO child(parent_id) VALUES (42)")  # no parent 42: FK fails

    with pytest.raises(ReferenceViolation) as info:
        db.write(two_steps)
    assert "child.parent_id -> parent(id)" in info.value.message
    assert db.query("SELECT * FROM parent") == []
    assert db.query("SELECT * FROM child") == []
    # Deleting a parent that is still referred to names the referring constraint.
    db.write(lambda tx: tx.execute("INSERT INTO parent(id) VALUES (5)"))
    db.write(lambda tx: tx.execute("INSERT INTO child(parent_id) VALUES (5)"))
    with pytest.raises(
        ReferenceViolation, match=r"delete on parent .*child\.parent_id -> parent\(id\)"
    ):
        db.write(lambda tx: tx.execute("DELETE FROM parent WHERE id = 5"))


def test_unique_maps_to_conflict_with_hint(db: Database) -> None:
    with pytest.raises(Conflict) as info:
        db.write(lambda tx: tx.execute("INSERT INTO c VALUES (1, 5)"))
    assert "c.id" in info.value.message
    assert info.value.hint


def test_transaction_context_manager_commits_and_rolls_back(db: Database) -> None:
    with db.transaction() as tx:
        tx.execute("INSERT INTO c(n) VALUES (7)")
    assert db.scalar("SELECT count(*) FROM c WHERE n = 7") == 1
    with pytest.raises(ValueError), db.transaction() as tx:
        tx.execute("INSERT INTO c(n) VALUES (8)")
        raise ValueError("abort")
    assert db.scalar("SELECT count(*) FROM c WHERE n = 8") == 0


def test_read_unit_sees_one_snapshot(db: Database) -> None:
    seen: list[int] = []

    def reader(tx: object) -> None:
        from bastion.store import ReadTx

        assert isinstance(tx, ReadTx)
        seen.append(tx.scalar("SELECT n FROM c WHERE id = 1"))
        db.write(lambda w: w.execute("UPDATE c SET n = 555 WHERE id = 1"))
        seen.append(tx.scalar("SELECT n FROM c WHERE id = 1"))

    db.read(reader)
    assert seen == [0, 0]
    assert db.scalar("SELECT n FROM c WHERE id = 1") == 555


def test_async_api_does_not_block_the_loop(db: Database) -> None:
    """While a unit holds the writer, the event loop keeps running: the unit itself waits
    for the loop to tick while it is inside, which it never would if ``awrite`` ran the unit
    on the loop's thread (it would wait out its deadline and report no ticks)."""
    inside = threading.Event()
    ticked_while_inside = threading.Event()

    def slow_unit(tx: WriteTx) -> bool:
        inside.set()
        seen = ticked_while_inside.wait(timeout=10)
        _increment(tx)
        return seen

    async def main() -> tuple[list[bool], int]:
        ticks_inside = 0

        async def ticker() -> None:
            nonlocal ticks_inside
            while True:
                if inside.is_set():
                    ticks_inside += 1
                    if ticks_inside >= 20:
                        ticked_while_inside.set()
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        results = await asyncio.gather(
            db.awrite(slow_unit), *(db.awrite(_increment) for _ in range(50))
        )
        task.cancel()
        return [bool(r) for r in results[:1]], ticks_inside

    seen, ticks_inside = asyncio.run(main())
    assert seen == [True], "the loop did not run while a unit held the writer"
    assert ticks_inside >= 20
    assert db.scalar("SELECT n FROM c WHERE id = 1") == 51


def test_store_busy_when_another_process_holds_the_lock(
    open_database: OpenDatabase, tmp_path: Path
) -> None:
    path = tmp_path / "b.db"
    with open_database(path, StoreConfig(busy_timeout_ms=2000)) as database:
        database.write(lambda tx: tx.execute("CREATE TABLE t(x)"))
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD_KEY
                + textwrap.dedent(f"""
                import sys
                from bastion.store.crypt.cipher import connect
                c = connect({str(path)!r}, key=KEY)
                c.execute("BEGIN IMMEDIATE")
                print("locked", flush=True)
                sys.stdin.readline()
            """),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "locked"
            with pytest.raises(StoreBusy) as info:
                database.write(lambda tx: tx.execute("INSERT INTO t VALUES (1)"))
            assert info.value.recoverable
            if _platform.SYSTEM == "linux":
                # The holder is named: pid and program, read from the kernel's lock table.
                assert info.value.details["holder"]["pid"] == holder.pid
                assert f"process {holder.pid}" in info.value.message
            else:  # no /proc/locks (macOS, BASTION_PORTABLE=1): the holder is unknown
                assert "holder" not in info.value.details
        finally:
            assert holder.stdin is not None
            holder.stdin.write("\n")
            holder.stdin.close()
            holder.wait(10)
            holder.stdout.close()
        # once released, writes go through again
        database.write(lambda tx: tx.execute("INSERT INTO t VALUES (2)"))
        assert database.scalar("SELECT count(*) FROM t") == 1


def test_several_databases_in_one_process_have_their_own_writer(
    open_database: OpenDatabase, tmp_path: Path
) -> None:
    dbs = [open_database(tmp_path / f"profile{i}.db", name=f"profile{i}") for i in range(3)]
    try:
        for i, d in enumerate(dbs):
            d.write(lambda tx, i=i: tx.execute(f"CREATE TABLE p{i}(x)"))
        names = {d._thread.name for d in dbs}
        assert len(names) == 3
        assert all(d.scalar("SELECT count(*) FROM sqlite_master") == 1 for d in dbs)
    finally:
        for d in dbs:
            d.close()


def test_closed_database_refuses_work(open_database: OpenDatabase, tmp_path: Path) -> None:
    database = open_database(tmp_path / "c.db")
    database.close()
    with pytest.raises(StoreClosed):
        database.write(lambda tx: tx.execute("SELECT 1"))
    with pytest.raises(StoreClosed):
        database.query("SELECT 1")


def test_long_async_query_moves_off_the_loop(db: Database) -> None:
    """A statement past the inline step budget is re-run in a worker thread: the loop keeps
    ticking while it runs, and the result is still exact."""
    long_sql = "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 300000) SELECT sum(i) FROM k"

    async def main() -> tuple[int, int]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        row = await db.aquery_one(long_sql)
        rows = await db.aquery(long_sql)
        stop.set()
        await task
        assert row is not None
        assert rows[0][0] == row[0]
        return int(row[0]), ticks

    total, ticks = asyncio.run(main())
    assert total == 300000 * 300001 // 2
    assert ticks > 2  # the loop ran while the thread computed


def test_async_point_read_and_errors_are_translated(db: Database) -> None:
    async def main() -> None:
        assert await db.aquery_one("SELECT n FROM c WHERE id = ?", (1,)) == (0,)
        assert await db.aquery_one("SELECT n FROM c WHERE id = ?", (99,)) is None
        assert await db.aread(lambda tx: tx.scalar("SELECT count(*) FROM c")) == 1
        with pytest.raises(StoreError, match="no such table"):
            await db.aquery("SELECT * FROM missing")

    asyncio.run(main())


def test_wal_watchdog_truncates_once_the_reader_lets_go(
    open_database: OpenDatabase, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = StoreConfig(wal_cap_bytes=1024 * 1024, wal_watchdog_interval_s=0.05)
    wal = Path(str(tmp_path / "w.db") + "-wal")
    with open_database(tmp_path / "w.db", cfg) as database:
        database.write(lambda tx: tx.execute("CREATE TABLE blob(x BLOB)"))
        holding, release = threading.Event(), threading.Event()

        def long_reader(tx: ReadTx) -> None:
            assert tx.scalar("SELECT count(*) FROM blob") == 0  # the snapshot starts here
            holding.set()
            release.wait(30)

        reader = threading.Thread(target=database.read, args=(long_reader,), name="slow-export")
        reader.start()
        assert holding.wait(10)
        # While the reader pins its snapshot, writes pile up in the WAL past the cap.
        for _ in range(40):
            database.write(lambda tx: tx.execute("INSERT INTO blob VALUES (randomblob(65536))"))
        assert wal.stat().st_size > cfg.wal_cap_bytes
        watchdog = database._watchdog
        wait_until(lambda: watchdog.last_holder is not None, what="the watchdog to name the holder")
        assert "slow-export" in watchdog.last_holder
        release.set()
        reader.join()
        wait_until(lambda: watchdog.truncations >= 1, what="the watchdog to truncate the WAL")
        assert wal.stat().st_size == 0
        assert database.scalar("SELECT count(*) FROM blob") == 40


def test_update_by_id_touching_nothing_is_not_found(db: Database) -> None:
    assert (
        db.write(
            lambda tx: tx.execute_one(
                "UPDATE c SET n = 1 WHERE id = ?", (1,), entity="counter", key=1
            )
        )
        == 1
    )
    with pytest.raises(NotFound, match="no counter with id 7") as info:
        db.write(
            lambda tx: tx.execute_one("DELETE FROM c WHERE id = ?", (7,), entity="counter", key=7)
        )
    assert info.value.details == {"entity": "counter", "key": 7}


@pytest.mark.parametrize("mode", ["always", "never"])
def test_write_from_inside_a_unit_is_refused_not_deadlocked(
    open_database: OpenDatabase, tmp_path: Path, mode: str
) -> None:
    with open_database(tmp_path / "r.db", StoreConfig(group_commit=mode)) as database:  # type: ignore[arg-type]
        with pytest.raises(RuntimeError, match="inside a write unit"):
            database.write(lambda tx: database.write(lambda inner: inner.execute("SELECT 1")))
        # the writer is free again afterwards
        assert database.write(lambda tx: tx.scalar("SELECT 41 + 1")) == 42


def test_a_thread_writing_in_a_loop_does_not_starve_another(
    open_database: OpenDatabase, tmp_path: Path
) -> None:
    """Under synchronous=NORMAL callers take the writer in turn and a busy thread may retake
    it, but a waiting caller gets in within a bounded time: its rows land between the busy
    thread's, not after all of them."""
    with open_database(tmp_path / "s.db") as database:
        database.write(lambda tx: tx.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)"))
        started = threading.Event()

        def busy() -> None:
            for i in range(20_000):
                database.write(lambda tx: tx.execute("INSERT INTO t(who) VALUES ('busy')"))
                if i == 100:
                    started.set()

        hog = threading.Thread(target=busy)
        hog.start()
        assert started.wait(30)
        for _ in range(20):
            database.write(lambda tx: tx.execute("INSERT INTO t(who) VALUES ('other')"))
        hog.join()
        last_other = database.scalar("SELECT max(id) FROM t WHERE who = 'other'")
        last_busy = database.scalar("SELECT max(id) FROM t WHERE who = 'busy'")
        assert last_other < last_busy  # the other caller finished while the loop still ran


def test_a_caller_bypassed_too_long_gets_the_writer_before_the_next_retake(
    open_database: OpenDatabase,
    tmp_path: Path,
) -> None:
    """The anti-starvation rule itself: once a waiter has waited past the bypass bound, the
    thread that just released the writer steps aside when it writes again, so the waiter's
    unit commits first (without the rule the releasing thread, still running, retakes the
    lock before the woken waiter)."""
    with open_database(tmp_path / "f.db") as database:
        database.write(lambda tx: tx.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)"))
        release = threading.Event()

        def hold(tx: WriteTx) -> None:
            tx.execute("INSERT INTO t(who) VALUES ('hog-1')")
            assert release.wait(30)

        def hog() -> None:
            database.write(hold)
            database.write(lambda tx: tx.execute("INSERT INTO t(who) VALUES ('hog-2')"))

        first = threading.Thread(target=hog)
        first.start()
        wait_until(lambda: database.scalar("SELECT 1") == 1 and database._leader is not None)
        waiter = threading.Thread(
            target=lambda: database.write(
                lambda tx: tx.execute("INSERT INTO t(who) VALUES ('waiter')")
            )
        )
        waiter.start()
        wait_until(lambda: database._starving == 1)  # waited past the bound, said so
        release.set()
        first.join(30)
        waiter.join(30)
        order = [who for (who,) in database.query("SELECT who FROM t ORDER BY id")]
        assert order == ["hog-1", "waiter", "hog-2"]


_OPENER = CHILD_KEY + textwrap.dedent(
    """
    import os, sys, time
    from bastion.store import Database
    path, go = sys.argv[1], sys.argv[2]
    while not os.path.exists(go):
        time.sleep(0.001)  # spin until the start line: the race is the point
    with Database.open(path, key=KEY) as db:
        db.write(lambda tx: tx.execute("CREATE TABLE IF NOT EXISTS t(pid INTEGER)"))
        db.write(lambda tx: tx.execute("INSERT INTO t VALUES (?)", (os.getpid(),)))
    print("ok")
    """
)


@pytest.mark.posix
@pytest.mark.parametrize("round_", range(3))
def test_processes_creating_the_same_new_file_at_once_never_see_busy(
    open_database: OpenDatabase, tmp_path: Path, round_: int
) -> None:
    """Switching a brand-new file to WAL needs an exclusive lock, and SQLite answers BUSY
    immediately (no busy handler) to a process that would deadlock: opening retries."""
    script = tmp_path / "opener.py"
    script.write_text(_OPENER)
    path, go = tmp_path / "new.db", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(path), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    go.touch()
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == "ok"
    with open_database(path) as database:
        assert database.scalar("SELECT count(*) FROM t") == 6


def test_open_waits_out_another_connection_creating_the_file(
    open_database: OpenDatabase, tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    """The deterministic form of the race above: another connection is mid-way through
    creating the file in rollback-journal mode (a write transaction open), so switching to WAL
    is answered BUSY at once, without the busy handler. Opening must retry, not surface it."""
    path = tmp_path / "new.db"
    creator = connect(str(path), key=db_key)
    creator.execute("BEGIN IMMEDIATE")
    creator.execute("CREATE TABLE made_by_creator(x)")
    state = {"opened": False, "open_when_released": None}

    def release() -> None:
        state["open_when_released"] = state["opened"]
        creator.execute("COMMIT")

    timer = threading.Timer(0.2, release)
    timer.start()
    try:
        with open_database(path, StoreConfig(busy_timeout_ms=20_000)) as database:
            state["opened"] = True
            assert database.scalar("PRAGMA journal_mode") == "wal"
            assert database.scalar("SELECT count(*) FROM made_by_creator") == 0
    finally:
        timer.join()
        creator.close()
    # The open was under way while the creator held its transaction, and only finished after.
    assert state["open_when_released"] is False


def _my_locks(path: Path) -> list[str]:
    """This process's POSIX locks on ``path``'s inode, from /proc/locks."""
    st = path.stat()
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    found = []
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields:
            continue  # a waiter's line, not a lock held
        if fields[4] == str(os.getpid()) and fields[5] == inode:
            found.append(fields[3])
    return found


@pytest.mark.posix
@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs /proc/locks (Linux)")
def test_opening_a_file_this_process_has_open_keeps_its_sqlite_locks(
    open_database: OpenDatabase, tmp_path: Path
) -> None:
    """Closing any descriptor of a file drops every POSIX lock the process holds on it
    (howtocorrupt.html 2.2). The open-time header check and recovery probe read the live
    file and its -shm; they must not close a descriptor of their own on them."""
    path = tmp_path / "locks.db"
    with open_database(path) as first:
        first.write(lambda tx: tx.execute("CREATE TABLE t(x)"))

        def inside_a_read(tx: ReadTx) -> tuple[list[str], list[str], list[str], list[str]]:
            tx.query("SELECT * FROM t")
            shm = Path(str(path) + "-shm")
            before = (_my_locks(path), _my_locks(shm))
            with open_database(path) as second:
                second.query("SELECT * FROM t")
            from bastion.store.recovery import open_check

            open_check(path, StoreConfig())
            return (*before, _my_locks(path), _my_locks(shm))

        db_before, shm_before, db_after, shm_after = first.read(inside_a_read)
    # The read holds locks on both files (so the test can see one go missing).
    assert db_before
    assert shm_before
    assert sorted(db_after) == sorted(db_before)
    assert set(shm_before) <= set(shm_after)


def test_lookup_returns_the_one_row_or_none_and_refuses_many(
    open_database: OpenDatabase, tmp_path: Path
) -> None:
    with open_database(tmp_path / "l.db") as database:
        database.write(lambda tx: tx.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT)"))
        database.write(lambda tx: tx.executemany("INSERT INTO t(k) VALUES (?)", [("a",), ("a",)]))
        assert database.lookup("SELECT id, k FROM t WHERE id = ?", (2,)) == (2, "a")
        assert database.lookup("SELECT id, k FROM t WHERE id = ?", (9,)) is None
        with pytest.raises(StoreError, match="more than one row") as many:
            database.lookup("SELECT id FROM t WHERE k = ?", ("a",))
        with pytest.raises(StoreError, match="SQL error"):
            database.lookup("SELECT nope FROM t WHERE id = ?", (1,))
        # The kept cursors are fine after both failures, and no reader holds a snapshot:
        # a TRUNCATE checkpoint (which waits for every reader) completes.
        for _ in range(2 * database.config.readers):
            assert database.lookup("SELECT k FROM t WHERE id = ?", (1,)) == ("a",)
        database.write(lambda tx: tx.execute("INSERT INTO t(k) VALUES ('b')"))
        busy, _, _ = database.run_outside_transaction(
            lambda tx: tx.query_one("PRAGMA wal_checkpoint(TRUNCATE)")
        )
        assert busy == 0  # even with the error (and its traceback) still alive
        assert many.value.hint


def _truncate_from_another_connection(
    path: Path, key: DatabaseKey | None = None
) -> tuple[int, int]:
    """(busy, WAL bytes after) of a TRUNCATE checkpoint that needs every snapshot released."""
    other = connect(str(path), key=key)
    try:
        busy = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()[0][0]
    finally:
        other.close()
    return int(busy), os.path.getsize(str(path) + "-wal")


@pytest.mark.parametrize("mode", ["always", "never"])
def test_first_row_reads_in_a_unit_leave_no_statement_open(
    open_database: OpenDatabase, tmp_path: Path, mode: str
) -> None:
    """A unit's statements run on a cursor the writer keeps. ``scalar``/``query_one`` over a
    query with many rows stop after the first; the transaction's end (on the same cursor)
    must reset that statement, or it would hold a read snapshot past COMMIT and a TRUNCATE
    checkpoint would report busy (as shown at the end). The same holds for a unit run
    outside a transaction, where no COMMIT follows."""
    path = tmp_path / "k.db"
    config = StoreConfig(group_commit=mode)  # type: ignore[arg-type]
    with open_database(path, config) as database:
        database.write(lambda tx: tx.execute("CREATE TABLE t(x INTEGER)"))
        database.write(
            lambda tx: tx.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(50)])
        )

        def first_row_last(read: Callable[[WriteTx], object]) -> Callable[[WriteTx], object]:
            def unit(tx: WriteTx) -> object:
                tx.execute("INSERT INTO t VALUES (100)")  # frames in the WAL to checkpoint
                return read(tx)  # the unit's last statement

            return unit

        assert database.write(first_row_last(lambda tx: tx.scalar("SELECT x FROM t"))) == 0
        assert _truncate_from_another_connection(path, database.key) == (0, 0)
        one = database.write(first_row_last(lambda tx: tx.query_one("SELECT x, 2 FROM t")))
        assert one == (0, 2)
        assert _truncate_from_another_connection(path, database.key) == (0, 0)
        with database.transaction() as tx:
            tx.execute("INSERT INTO t VALUES (101)")
            assert tx.scalar("SELECT x FROM t") == 0
        assert _truncate_from_another_connection(path, database.key) == (0, 0)
        database.write(lambda tx: tx.execute("INSERT INTO t VALUES (102)"))
        assert database.run_outside_transaction(lambda tx: tx.scalar("SELECT x FROM t")) == 0
        assert _truncate_from_another_connection(path, database.key) == (0, 0)

        # The check can fail: a statement left mid-way past COMMIT holds the snapshot.
        held: list[apsw.Cursor] = []

        def leave_open(tx: WriteTx) -> None:
            tx.execute("INSERT INTO t VALUES (103)")
            cursor = tx._conn.cursor()
            next(cursor.execute("SELECT x FROM t"))
            held.append(cursor)

        database.write(leave_open)
        assert _truncate_from_another_connection(path, database.key)[0] == 1
        held.pop().close()
        assert _truncate_from_another_connection(path, database.key) == (0, 0)


def test_a_statement_run_from_inside_another_uses_a_cursor_of_its_own(
    open_database: OpenDatabase, tmp_path: Path
) -> None:
    """A SQL function that writes through the unit's tx while the unit's own statement is
    stepping re-enters the kept cursor; apsw refuses that, and the tx falls back to a new one."""
    with open_database(tmp_path / "r.db") as database:
        database.write(lambda tx: tx.execute("CREATE TABLE t(x INTEGER); CREATE TABLE log(x)"))
        database.write(lambda tx: tx.executemany("INSERT INTO t VALUES (?)", [(1,), (2,), (3,)]))

        def unit(tx: WriteTx) -> int:
            def note(x: int) -> int:
                tx.execute("INSERT INTO log VALUES (?)", (x,))
                return int(tx.scalar("SELECT count(*) FROM log"))

            tx._conn.create_scalar_function("note", note)
            return tx.execute("UPDATE t SET x = note(x)")

        assert database.write(unit) == 3
        assert database.query("SELECT x FROM t ORDER BY rowid") == [(1,), (2,), (3,)]
        assert database.query("SELECT x FROM log ORDER BY rowid") == [(1,), (2,), (3,)]


def test_callbacks_belong_to_their_own_unit(open_database: OpenDatabase, tmp_path: Path) -> None:
    """Units on the mutex path share one tx handle: a callback registered by one unit never
    runs for another unit's commit or rollback."""
    ran: list[str] = []
    with open_database(tmp_path / "c.db") as database:
        database.write(lambda tx: tx.execute("CREATE TABLE t(x INTEGER)"))

        def commits(tx: WriteTx) -> None:
            tx.on_rollback(lambda: ran.append("rollback of the unit that committed"))
            tx.on_commit(lambda: ran.append("commit"))
            tx.execute("INSERT INTO t VALUES (1)")

        def fails(tx: WriteTx) -> None:
            tx.on_commit(lambda: ran.append("commit of the unit that failed"))
            tx.on_rollback(lambda: ran.append("rollback"))
            raise ValueError("no")

        database.write(commits)
        with pytest.raises(ValueError):
            database.write(fails)
        database.write(lambda tx: tx.execute("INSERT INTO t VALUES (2)"))
        assert ran == ["commit", "rollback"]
        assert database.query("SELECT x FROM t ORDER BY x") == [(1,), (2,)]


def test_a_unit_queued_while_the_writer_thread_finishes_is_not_stranded(
    open_database: OpenDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller that queues its unit and finds the writer lock held must not depend on the
    holder looking at the queue again: here the writer thread has drained the queue and still
    holds the lock when the unit arrives. The caller's failed attempt to lead wakes the
    writer thread, which runs the unit once the lock is free."""
    database = open_database(tmp_path / "w.db", StoreConfig(group_commit="always"))
    database.write(lambda tx: tx.execute("CREATE TABLE t(x INTEGER)"))
    lead_failed = threading.Event()
    arrived = threading.Event()
    original_lead = Database._lead_if_free
    original_drain = Database._drain
    late: list[threading.Thread] = []

    def lead_if_free(self: Database) -> None:
        original_lead(self)
        lead_failed.set()

    def drain(self: Database) -> None:
        original_drain(self)
        if threading.current_thread() is self._thread and not late:
            # The queue is empty and the lock still held: now a unit arrives.
            caller = threading.Thread(
                target=lambda: database.write(lambda tx: tx.execute("INSERT INTO t VALUES (2)"))
            )
            late.append(caller)
            caller.start()
            assert lead_failed.wait(10)
            arrived.set()

    monkeypatch.setattr(Database, "_lead_if_free", lead_if_free)
    monkeypatch.setattr(Database, "_drain", drain)
    try:
        asyncio.run(database.awrite(lambda tx: tx.execute("INSERT INTO t VALUES (1)")))
        assert arrived.wait(10)  # (the awrite's unit resolved inside the drain, before this)
        late[0].join(10)
        assert not late[0].is_alive(), "the unit queued after the last drain was never run"
        assert database.query("SELECT x FROM t ORDER BY x") == [(1,), (2,)]
    finally:
        monkeypatch.undo()
        database.close()
