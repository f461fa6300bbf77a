"""One SQLite database: posture at open, one writer with group commit, a reader pool.

Why this shape (seed 003 and 004 both rebuilt it by hand):

* **One writer connection.** SQLite allows one writer at a time per file; every write of
  this process goes through one connection, used by one thread at a time under the writer
  lock, so threads of this process never compete for SQLite's lock and ``SQLITE_BUSY`` can
  only come from *other processes*, where ``busy_timeout`` absorbs it. Every write
  transaction starts with ``BEGIN IMMEDIATE`` so the lock is taken up front: a deferred
  transaction that reads, then tries to write while another connection committed, fails with
  ``SQLITE_BUSY_SNAPSHOT`` no timeout can cure. A dedicated writer thread leads the units of
  async callers, so the event loop never blocks.
* **Group commit** (``store.group_commit``; by default when ``synchronous=FULL``). Units
  queued while the writer is busy run together in one transaction, each inside its own
  ``SAVEPOINT``: a unit that raises is rolled back to its savepoint alone (its ``on_rollback``
  callbacks run) and its exception reaches only its caller. One COMMIT -- one fsync -- then
  serves the whole group. Under ``synchronous=NORMAL`` a commit costs no fsync and the thread
  hand-offs of a queue would cost more than they save: callers take the writer in turn, each
  unit in its own transaction, with a bound on how long a waiter can be bypassed.
* **Readers.** A bounded pool of read-only connections (:mod:`bastion.store._reads`, mixed
  into ``Database``). WAL readers never block the writer or each other; a multi-statement
  read unit runs inside ``BEGIN`` so it sees one snapshot.

Nothing in this module retries a unit: a unit runs once, and its outcome is reported once.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import apsw

from bastion.config import StoreConfig
from bastion.errors import (
    StoreBusy,
    StoreClosed,
    StoreError,
    StoreIOError,
    StoreOpenError,
)
from bastion.store._diagnose import repair_companion_modes, write_blocker
from bastion.store._errors import translate
from bastion.store._locks import write_lock_holder
from bastion.store._reads import ReaderPool
from bastion.store._units import Unit, resolve_error, run_callbacks
from bastion.store.attempts import Attempt, run_attempts
from bastion.store.crypt.cipher import check_encrypted, connect
from bastion.store.crypt.key import DatabaseKey
from bastion.store.dialect import SQLITE, Dialect, sqlite_only
from bastion.store.pg.url import is_postgres_url
from bastion.store.posture import Posture, apply_posture, check_header, read_posture
from bastion.store.tally import StoreTally
from bastion.store.tx import ReadTx, Row, WriteTx

__all__ = ["Database", "Posture", "ReadTx", "Row", "WriteTx"]

log = logging.getLogger("bastion.store")

T = TypeVar("T")

_MAX_GROUP = 256
#: Longest pause a group-commit leader makes for writers about to queue again (see _gather).
_GATHER_MAX_S = 0.0005
#: Commits faster than this had no fsync to share: the leader does not wait for more units.
_GATHER_MIN_COMMIT_S = 0.00005


_STOP = object()
_get_ident = threading.get_ident  # a global and an attribute fewer inside the writer lock
_monotonic = time.monotonic  # the same, for the commit timing of the metrics tally
_bisect_left = bisect.bisect_left
#: How long a caller may wait for the writer while others keep re-taking it (see ``write``).
_MAX_BYPASS_S = 0.002


def _never_retry(err: BaseException) -> None:
    """SQLite's attempts: one writer, so no conflict a second run could win."""
    return None


class Database(ReaderPool):
    """An open SQLite database file. Thread-safe; create one per file per process.

    Use :meth:`open`. ``write``/``awrite`` run a unit on the writer thread; ``read``/``aread``
    and ``query*`` use the reader pool. ``close`` drains queued writes first.
    ``Database.open("postgresql://...")`` returns the PostgreSQL engine instead
    (:class:`bastion.store.pg.engine.PgDatabase`, same contract).
    """

    #: What differs between engines (plans, catalog); PostgreSQL's database overrides it.
    dialect: Dialect = SQLITE

    def __init__(
        self,
        path: Path,
        config: StoreConfig,
        writer: apsw.Connection,
        name: str,
        *,
        vfs: str | None = None,
        reader_target: tuple[str, int] | None = None,
        key: DatabaseKey | None = None,
    ) -> None:
        self.path = path
        self._vfs = vfs
        # The key every connection to this file is given (None: a plaintext database). Backups,
        # checks and recovery of this database take it from here.
        self._key = key
        # What reader connections open: the file itself, or the read-only URI a database
        # opened with ``readonly=True`` reads through (see store/_readonly.py).
        self._reader_target = reader_target or (str(path), apsw.SQLITE_OPEN_READONLY)
        self.name = name
        self.config = config
        self._writer = writer
        # BEGIN, the units' statements, SAVEPOINTs and COMMIT/ROLLBACK all run on one cursor
        # the writer keeps. A cursor per statement costs ~0.3 us, paid inside the writer lock
        # where it holds up every other writer (bench/store_write.py, 4 threads); and ending
        # the transaction on this cursor resets any statement a unit stopped reading mid-way
        # (``scalar``, ``query_one``), which would otherwise hold a read snapshot past COMMIT.
        # ``write`` hands every unit the same tx handle (one per unit costs ~0.3 us more).
        self._cursor = writer.cursor()
        self._tx = WriteTx(writer, self._cursor)
        # Units waiting for the writer (deque append/popleft are atomic), the lock whose
        # holder is the writer, and the writer thread's wake-up queue.
        self._pending: deque[Unit[Any]] = deque()
        self._lock = threading.Lock()
        # Callers that have waited _MAX_BYPASS_S for the lock (anti-starvation, see write).
        # ``_turns`` guards the count and wakes callers that stepped aside once they are in.
        self._starving = 0
        # Group commit: the writer threads of the last two groups, and how long a COMMIT takes
        # (a moving average: what a pause to gather more units is weighed against).
        self._owners: tuple[set[int], set[int]] = (set(), set())
        self._last_commit_s = 0.0
        #: Counts commits for GET /metrics when set (the daemon's; None: nothing counted).
        self.tally: StoreTally | None = None
        self._turns = threading.Condition(threading.Lock())
        # Group commit pays off when a commit is expensive: under synchronous=FULL each one
        # is an fsync, and grouping concurrent callers shares it (bench/store_write.py: 3-4x).
        self._group_commit = config.group_commit == "always" or (
            config.group_commit == "auto" and config.synchronous == "FULL"
        )
        self._leader: int | None = None
        self._wake: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        self._init_readers()
        self._thread = threading.Thread(
            target=self._writer_loop, name=f"bastion-writer:{name}", daemon=True
        )
        self._thread.start()
        self.posture = read_posture(writer)
        self._watchdog: Any = None
        #: None for a normal open; how the file is read when opened read-only.
        self.readonly: str | None = None
        # The archiver (store/archive) that took over this database's checkpoints, if any:
        # the WAL watchdog asks it instead of checkpointing past its read transaction.
        self._wal_owner: Any = None

    # --- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        config: StoreConfig | None = None,
        *,
        name: str | None = None,
        create: bool = True,
        vfs: str | None = None,
        readonly: bool = False,
        key: DatabaseKey | None = None,
    ) -> Database:
        """Open (or create) ``path``, set its posture, and verify it by reading it back.

        ``key`` opens (or creates) an encrypted database (see :mod:`bastion.store.crypt`):
        every connection is keyed, and the file on disk is read back to be encrypted. An
        encrypted file without a key raises ``DatabaseKeyMissing``, a key that does not open
        it ``DatabaseKeyWrong``, a plaintext file given a key ``DatabaseNotEncrypted``: never
        "not a database" or "corrupt", and the file is not changed.

        A file that exists but is not SQLite (or is truncated) raises ``NotADatabase`` and is
        not modified: the header is checked before SQLite is allowed to touch the file. A
        file this process cannot write (mode, owner, read-only mount) raises
        ``StorePermissionError``/``StoreReadOnly`` before SQLite touches it either: SQLite
        would open it read-only and create its ``-wal``/``-shm`` with the file's mode.

        ``readonly=True`` opens without writing anything next to the file (see
        :meth:`open_readonly`); :meth:`open_for_reading` tries a normal open first.
        """
        cfg = config or StoreConfig()
        if isinstance(path, str) and is_postgres_url(path):
            from bastion.store.pg.engine import PgDatabase  # psycopg only when asked for

            if key is not None or vfs is not None:
                from bastion.store.pg.url import parse_url

                feature = "encryption at rest" if key is not None else "SQLite VFSes"
                raise sqlite_only(feature, shown=parse_url(path).display)
            return PgDatabase.connect(path, cfg, name=name, readonly=readonly)
        db_path = Path(path).absolute()
        check_header(db_path, key=key)
        if not create and not db_path.exists():
            raise StoreOpenError(
                f"{db_path} does not exist", hint="Run `bastion init` first.", path=str(db_path)
            )
        if readonly:
            return cls.open_readonly(db_path, cfg, name=name, vfs=vfs, key=key)
        # Companions an earlier write left with the database's 0400 mode: ours, so fixed.
        for fixed in repair_companion_modes(db_path):
            log.info("%s had a mode other than 0600; set it back to 0600", fixed)
        blocker = write_blocker(db_path, what="opening")
        if blocker is not None:
            raise blocker
        flags = apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if create else 0)
        existed = db_path.exists()
        try:
            conn = connect(str(db_path), flags=flags, vfs=vfs, key=key)
        except apsw.Error as err:
            raise translate(err, path=str(db_path), what="opening") from err
        try:
            if not existed:
                os.chmod(db_path, 0o600)
            apply_posture(conn, cfg, str(db_path))
            if key is not None:
                check_encrypted(db_path)
        except apsw.Error as err:
            from bastion.store.crypt.refusal import key_refusal

            mapped = key_refusal(db_path, key) or translate(
                err, path=str(db_path), what="opening", conn=conn
            )
            conn.close()
            raise mapped from err
        except BaseException:
            conn.close()
            raise
        db = cls(db_path, cfg, conn, name or db_path.stem, vfs=vfs, key=key)
        from bastion.store.wal import WalWatchdog  # wal imports this module

        db._watchdog = WalWatchdog(db)
        db._watchdog.start()
        return db

    @classmethod
    def open_readonly(
        cls,
        path: str | os.PathLike[str],
        config: StoreConfig | None = None,
        *,
        name: str | None = None,
        vfs: str | None = None,
        reason: StoreError | None = None,
        key: DatabaseKey | None = None,
    ) -> Database:
        """Open ``path`` for reading only, writing nothing next to it (no ``-wal``/``-shm``
        created or grown): how reads keep working on a full disk, read-only media or a file
        this process may not write. Every write raises ``reason`` (why the database could
        not be opened for writing) or ``StoreReadOnly``. No posture is set; it is read back.
        """
        from bastion.store._readonly_db import open_readonly  # it subclasses Database

        return open_readonly(
            path, config or StoreConfig(), name=name, vfs=vfs, reason=reason, key=key
        )

    @classmethod
    def open_for_reading(
        cls,
        path: str | os.PathLike[str],
        config: StoreConfig | None = None,
        *,
        name: str | None = None,
        key: DatabaseKey | None = None,
    ) -> Database:
        """Open an existing database for a read-only command: normally when the disk lets
        us, else read-only (:meth:`open_readonly`) when the normal open is refused by an I/O
        condition (full disk, read-only media, permissions). ``db.readonly`` says which."""
        try:
            return cls.open(path, config, name=name, create=False, key=key)
        except StoreIOError as err:
            log.info("opening %s read-only: %s", path, err.message)
            return cls.open_readonly(path, config, name=name, reason=err, key=key)

    # --- writes --------------------------------------------------------------------------
    #
    # Flat combining: a caller queues its unit, then tries to take the writer lock. The thread
    # that gets it (the leader) runs everything queued -- its own unit and the others' -- as
    # groups, one transaction each, while the rest wait on their unit's completion lock. No
    # thread hand-off is needed when one thread writes alone, and under contention the leader
    # amortises BEGIN/COMMIT (and the fsync under synchronous=FULL) over the whole group.
    # There is still one writer: one connection, used by one thread at a time under the lock.
    # The dedicated writer thread leads for async callers (the event loop must never block)
    # and picks up units queued while a leader was finishing.

    def write(self, fn: Callable[[WriteTx], T]) -> T:
        """Run ``fn`` in a write transaction; return its result.

        ``fn`` may be grouped with other callers' units in one transaction; it runs inside
        its own savepoint, so its exception rolls back only its own changes and is re-raised
        here. Do not call ``write`` from inside a unit: use the ``tx`` you were given.
        """
        if self._group_commit:
            return self._write_grouped(fn)
        # Commits are cheap (synchronous=NORMAL, no fsync): queueing to be grouped would cost
        # more in thread hand-offs than it saves, so callers take the writer in turn, like a
        # mutex, each unit in its own transaction (after any queued async units).
        #
        # With several writers, throughput is decided outside the lock, on the path from one
        # write's release to the next write's try: a thread that writes in a loop and re-takes
        # the lock before the waiter it woke can run saves a hand-off between threads, and
        # each instruction on that path widens the window for one (0.3 us of work there cost
        # ~3.5 us per write with 4 writers; inside the lock, ~1 us). So the lock is tried
        # first and the checks run while it is held; and a failed try blocks at once, since
        # the waiter the lock went to needs the GIL this thread holds until it blocks.
        # Never unfair for long: a waiter that has gone _MAX_BYPASS_S without getting in says
        # so (``_starving``), and callers step aside until it is in (_take_turn).
        lock = self._lock
        if not (lock.acquire(False) or lock.acquire(True, _MAX_BYPASS_S)):
            self._wait_starving(lock)  # also refuses a write from inside a unit
        elif self._starving:
            lock.release()
            self._take_turn(lock)
        try:
            if self._closed:
                raise StoreClosed(f"{self.path} is closed")
            self._leader = _get_ident()
            if self._pending:  # async units queued first go first
                self._drain()
            # One transaction of its own (what _begin, _commit and _abort do, inlined).
            cursor = self._cursor
            try:
                cursor.execute("BEGIN IMMEDIATE")
            except apsw.Error as err:
                raise self._begin_error(err) from err
            tx = self._tx  # one handle serves every unit of this path, one at a time
            try:
                result = fn(tx)
            except apsw.Error as err:
                mapped = translate(err, path=str(self.path), conn=self._writer)
                self._abort(tx)
                raise mapped from err
            except BaseException:
                self._abort(tx)
                raise
            tally = self.tally
            try:
                if tally is None:
                    cursor.execute("COMMIT")
                else:  # the latency is all a one-unit commit counts (StoreTally's docstring)
                    started = _monotonic()
                    cursor.execute("COMMIT")
                    took = _monotonic() - started
                    # Buckets.observe, inlined: this runs on every write with metrics on, and
                    # the call cost a third of the tally's ~0.45 us (bench/store_write.py).
                    buckets = tally.commit_s
                    buckets.counts[_bisect_left(buckets.bounds, took)] += 1
                    buckets.total += took
            except apsw.Error as err:
                mapped = translate(err, path=str(self.path), what="committing", conn=self._writer)
                self._abort(tx)
                raise mapped from err
            if tx._on_commit is not None or tx._on_rollback is not None:
                callbacks = tx._on_commit
                tx._on_commit = tx._on_rollback = None
                run_callbacks(callbacks)
            return result
        finally:
            self._leader = None
            lock.release()

    def _wait_starving(self, lock: threading.Lock) -> None:
        """Waited _MAX_BYPASS_S for the writer: say so (others step aside), then wait on."""
        if self._leader == threading.get_ident():  # the lock is not reentrant: refuse, not hang
            raise RuntimeError("write called from inside a write unit; use the tx it was given")
        if self.tally is not None:
            self.tally.starved += 1
        turns = self._turns
        with turns:
            self._starving += 1
        try:
            lock.acquire()
        finally:
            with turns:
                self._starving -= 1
                turns.notify_all()

    def _take_turn(self, lock: threading.Lock) -> None:
        """Step aside until starved waiters are in, then take the writer like ``write``."""
        self._step_aside()
        if not lock.acquire(True, _MAX_BYPASS_S):
            self._wait_starving(lock)

    def _write_grouped(self, fn: Callable[[WriteTx], T]) -> T:
        unit: Unit[T] = Unit(fn)
        unit.owner = threading.get_ident()
        self._submit(unit)
        self._lead_if_free()
        return unit.wait()

    def _step_aside(self) -> None:
        """Let starved waiters take the writer before this caller tries (bounded)."""
        with self._turns:
            self._turns.wait_for(lambda: not self._starving, timeout=0.05)

    async def awrite(self, fn: Callable[[WriteTx], T]) -> T:
        """``write`` for coroutines: the unit runs on the writer thread; the loop never blocks."""
        import asyncio  # not at module level: CLI commands never need it (~17 ms)

        unit: Unit[T] = Unit(fn, loop=asyncio.get_running_loop())
        self._submit(unit)
        self._wake.put(None)
        assert unit.afuture is not None
        return await unit.afuture

    def run_outside_transaction(self, fn: Callable[[WriteTx], T]) -> T:
        """Run ``fn`` on the writer connection with no transaction open (VACUUM, some PRAGMAs,
        migration steps SQLite refuses inside a transaction). ``fn`` owns atomicity."""
        unit: Unit[T] = Unit(fn, outside_tx=True)
        self._submit(unit)
        self._lead_if_free()
        return unit.wait()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[WriteTx]:
        """``with db.transaction() as tx:`` -- the body runs as one write transaction.

        The calling thread holds the writer for the body's duration (queued units wait), so
        keep the body short and do not wait on other writers inside it.
        """
        self._check_not_leader()
        if self._closed:
            raise StoreClosed(f"{self.path} is closed")
        with self._lock:
            self._leader = threading.get_ident()
            try:
                self._drain()
                tx = self._begin()
                try:
                    yield tx
                except BaseException:
                    self._abort(tx)
                    raise
                self._commit(tx)
            finally:
                self._leader = None
        self._after_release()

    def attempts(self) -> Iterator[Attempt]:
        """``for attempt in db.attempts(): with attempt as tx: ...`` -- the retried form of
        :meth:`transaction` (:mod:`bastion.store.attempts`). SQLite has one writer and never
        aborts a transaction for a conflict: the body runs once. PostgreSQL runs it again
        after a serialization failure or a deadlock."""
        return run_attempts(self.transaction, _never_retry)

    def _check_not_leader(self) -> None:
        if self._leader == threading.get_ident():
            raise RuntimeError(
                "write called from inside a write unit; use the tx the unit was given"
            )

    # One transaction of its own, run by the thread holding the writer lock: the mutex path
    # of ``write`` and the body of ``transaction``.

    def _begin(self) -> WriteTx:
        try:
            self._cursor.execute("BEGIN IMMEDIATE")
        except apsw.Error as err:
            raise self._begin_error(err) from err
        return WriteTx(self._writer, self._cursor)

    def _abort(self, tx: WriteTx) -> None:
        """Roll back (if SQLite has not already) and run the compensations."""
        with contextlib.suppress(apsw.Error):
            if self._writer.in_transaction:
                self._cursor.execute("ROLLBACK")
        callbacks = tx._on_rollback
        tx._on_commit = tx._on_rollback = None  # the handle may serve the next unit
        run_callbacks(callbacks)

    def _commit(self, tx: WriteTx) -> None:
        try:
            self._cursor.execute("COMMIT")
        except apsw.Error as err:
            mapped = translate(err, path=str(self.path), what="committing", conn=self._writer)
            self._abort(tx)
            raise mapped from err
        run_callbacks(tx._on_commit)

    def _submit(self, unit: Unit[Any]) -> None:
        if self._closed:
            raise StoreClosed(f"{self.path} is closed")
        self._check_not_leader()
        self._pending.append(unit)

    def _lead_if_free(self) -> None:
        if self._lock.acquire(False):
            self._lead_locked()
        else:
            # The holder may be past its last look at the queue (``write`` does not look
            # again after its own unit): the writer thread takes the lock when it is free.
            self._wake.put(None)

    def _lead_locked(self) -> None:
        """Run queued units with the lock held; release it; hand leftovers to the writer thread."""
        self._leader = threading.get_ident()
        try:
            self._drain()
        finally:
            self._leader = None
            self._lock.release()
        self._after_release()

    def _after_release(self) -> None:
        # A caller that queued its unit and found the lock taken is now waiting on that unit;
        # if it arrived after our last look at the queue, nobody would run it: wake the
        # writer thread, which takes the lock and drains.
        if self._pending:
            self._wake.put(None)

    def _drain(self) -> None:
        pending = self._pending
        conn = self._writer
        while pending:
            first = pending.popleft()
            if first.outside_tx:
                self._run_outside(conn, first)
                continue
            if self._group_commit:
                self._gather(pending)
            group: list[Unit[Any]] = [first]
            while pending and len(group) < _MAX_GROUP and not pending[0].outside_tx:
                group.append(pending.popleft())
            if self._group_commit:
                owners = {unit.owner for unit in group if unit.owner}
                self._owners = (self._owners[1], owners)
            self._run_group(conn, group)

    def _gather(self, pending: deque[Unit[Any]]) -> None:
        """Before a group commits, give writers that were just served a moment to queue again.

        The threads of the last group return from ``write`` while the next group starts; without
        a pause the groups alternate between the leader's own unit and everyone else's (1, 3, 1,
        3 with 4 writers): two fsyncs where one would do. PostgreSQL's ``commit_delay`` /
        ``commit_siblings`` answer the same problem: wait briefly, and only when other writers
        are active. Here "active" is the distinct threads of the last two groups, and the wait
        is at most half of a commit's average duration (an fsync under synchronous=FULL) and
        never more than _GATHER_MAX_S, so it costs little when nobody comes.
        """
        if self._last_commit_s < _GATHER_MIN_COMMIT_S:
            return  # a commit without an fsync is cheaper than the hand-offs a wait costs
        expected = len(self._owners[0] | self._owners[1])
        if expected <= 1 or len(pending) + 1 >= expected:
            return
        deadline = time.monotonic() + min(_GATHER_MAX_S, self._last_commit_s / 2)
        while len(pending) + 1 < expected and time.monotonic() < deadline:
            time.sleep(0)  # let the served threads run: they hold the GIL to queue again

    def _writer_loop(self) -> None:
        while True:
            token = self._wake.get()
            if self._pending:
                with self._lock:
                    self._leader = threading.get_ident()
                    try:
                        self._drain()
                    finally:
                        self._leader = None
            if token is _STOP and not self._pending:
                return

    def _run_outside(self, conn: apsw.Connection, unit: Unit[Any]) -> None:
        tx = WriteTx(conn, self._cursor)
        try:
            try:
                result = unit.fn(tx)
            finally:
                # No COMMIT follows to reset a statement the unit stopped reading mid-way.
                with contextlib.suppress(apsw.Error):
                    self._cursor.execute("")
        except apsw.Error as err:
            mapped = translate(
                err,
                path=str(self.path),
                what="running a statement outside a transaction",
                conn=conn,
            )
            resolve_error(unit, mapped, err)
        except BaseException as err:
            resolve_error(unit, err, None)
        else:
            unit.finish(result)

    def _run_group(self, conn: apsw.Connection, group: list[Unit[Any]]) -> None:
        cursor = self._cursor  # the transaction's statements reset the units' (see __init__)
        try:
            cursor.execute("BEGIN IMMEDIATE")
        except apsw.Error as err:
            mapped = self._begin_error(err)
            for unit in group:
                resolve_error(unit, mapped, err)
            return
        # A group of one needs no savepoint: the unit's failure rolls back the transaction.
        alone = len(group) == 1
        ok: list[tuple[Unit[Any], Any]] = []
        for unit in group:
            tx = WriteTx(conn, self._cursor)
            unit.tx = tx
            if not alone:
                cursor.execute("SAVEPOINT unit")
            try:
                result = unit.fn(tx)
            except BaseException as err:
                # The unit's own failure: undo its changes only, tell only its caller.
                with contextlib.suppress(apsw.Error):
                    if alone:
                        cursor.execute("ROLLBACK")
                    else:
                        cursor.execute("ROLLBACK TO unit")
                        cursor.execute("RELEASE unit")
                run_callbacks(tx._on_rollback)
                if isinstance(err, apsw.Error):
                    resolve_error(unit, translate(err, path=str(self.path), conn=conn), err)
                else:
                    resolve_error(unit, err, None)
                if alone or conn.in_transaction:
                    continue
                # SQLite rolled the whole transaction back (I/O error, disk full): every unit
                # that had succeeded so far is lost too, and the rest must run anew.
                lost = StoreError(
                    f"transaction on {self.path} was rolled back by SQLite after an error"
                )
                self._fail_group(ok, lost)
                rest = group[group.index(unit) + 1 :]
                for later in reversed(rest):
                    self._pending.appendleft(later)
                return
            else:
                if not alone:
                    cursor.execute("RELEASE unit")
                ok.append((unit, result))
        if not ok:
            if conn.in_transaction:
                with contextlib.suppress(apsw.Error):
                    cursor.execute("ROLLBACK")
            return
        try:
            started = time.monotonic()
            cursor.execute("COMMIT")
            # Smoothed: one fast fsync (the disk cache had room) must not switch gathering off.
            took = time.monotonic() - started
            self._last_commit_s += (took - self._last_commit_s) / 8
            if self.tally is not None:
                self.tally.committed(took, len(ok))
        except apsw.Error as err:
            mapped = translate(err, path=str(self.path), what="committing", conn=conn)
            with contextlib.suppress(apsw.Error):
                if conn.in_transaction:
                    cursor.execute("ROLLBACK")
            self._fail_group(ok, mapped, err)
            return
        for unit, result in ok:
            if unit.tx is not None and unit.tx._on_commit:
                run_callbacks(unit.tx._on_commit)
            unit.finish(result)

    def _begin_error(self, err: apsw.Error) -> StoreError:
        mapped = translate(
            err, path=str(self.path), what="starting a write transaction", conn=self._writer
        )
        if isinstance(mapped, StoreBusy):
            if self.tally is not None:
                self.tally.busy += 1
            holder = write_lock_holder(self.path)
            if holder is not None:
                mapped = StoreBusy(
                    f"{self.path} stayed locked past the busy timeout "
                    f"({self.config.busy_timeout_ms} ms): process {holder['pid']} "
                    f"({holder['name'] or 'unknown program'}) holds the write lock",
                    holder=holder,
                )
        return mapped

    @staticmethod
    def _fail_group(
        ok: list[tuple[Unit[Any], Any]], error: BaseException, cause: BaseException | None = None
    ) -> None:
        for unit, _ in ok:
            if unit.tx is not None:
                run_callbacks(unit.tx._on_rollback)
            resolve_error(unit, error, cause)

    # --- lifecycle -----------------------------------------------------------------------

    def file_sizes(self) -> dict[str, int]:
        """Bytes of the database file and its ``-wal`` and ``-shm`` companions (0 if absent)."""
        sizes = {}
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            sizes[suffix or "db"] = p.stat().st_size if p.exists() else 0
        return {"db": sizes["db"], "wal": sizes["-wal"], "shm": sizes["-shm"]}

    def close(self) -> None:
        """Finish queued writes, stop the writer thread, close every connection."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self._watchdog is not None:
            self._watchdog.stop()
        self._wake.put(_STOP)
        self._thread.join()
        self._close_readers()
        with self._lock:  # a caller thread may still be leading its last group
            self._writer.close()

    @property
    def encrypted(self) -> bool:
        """Whether this database is encrypted (opened with a key)."""
        return self._key is not None

    @property
    def key(self) -> DatabaseKey | None:
        """The key this database was opened with (None: plaintext), for the file-level
        functions that need it (listing and rotating its backups). Its repr is masked."""
        return self._key

    @property
    def key_id(self) -> str | None:
        """The fingerprint of the key this database was opened with (never the key)."""
        return None if self._key is None else self._key.key_id

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has run."""
        return self._closed

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Database {self.name} {self.path}{' closed' if self._closed else ''}>"

    # Internal: the writer connection, for store/ modules that need the driver (backup,
    # checkpoint). Always used from inside a unit or with the writer idle.
    def _driver_connection(self) -> apsw.Connection:
        return self._writer

    def _side_connection(self) -> apsw.Connection:
        """Internal: one more read-write connection to this file, opened the way this
        database's own are (same VFS, busy timeout, synchronous), for store/ modules that
        need a connection of their own (the WAL archiver's read transaction and checkpoints).
        No posture is set on it and it never writes; the caller closes it. Whatever an open
        needs (a VFS, a key) is applied here, so such modules follow the database."""
        conn = connect(
            str(self.path), flags=apsw.SQLITE_OPEN_READWRITE, vfs=self._vfs, key=self._key
        )
        try:
            conn.setbusytimeout(self.config.busy_timeout_ms)
            conn.pragma("synchronous", self.config.synchronous)
        except BaseException:
            conn.close()
            raise
        return conn
