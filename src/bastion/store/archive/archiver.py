"""Continuous archiving of one database's WAL (Litestream's idea, on bastion's own backups).

The archiver is a thread beside an open :class:`~bastion.store.engine.Database`. Each *pass*
copies the frames committed since the last pass from the ``-wal`` file into a new segment of
the archive (:mod:`.segment`), compressed and checksummed. Passes run every
``[archive] interval_s`` and whenever the WAL has grown by ``checkpoint_frames``; after the
copy the archiver runs the checkpoint itself (SQLite's autocheckpoint on this process's
writer is handed over to it). Commits of other processes (the CLI writing while the daemon
runs) are in the same WAL and are archived the same way.

**Why no frame can be lost.** SQLite reuses the WAL only after a checkpoint has copied every
frame into the database file and no reader still uses the WAL ("restart"). Like Litestream,
the archiver holds a read transaction ``R`` open on a connection of its own between passes,
begun when it had copied everything committed (its snapshot is the archived position ``P``):

* while ``R`` holds a WAL read mark, no frame past ``P`` can be checkpointed (a checkpoint
  never copies past a live reader's snapshot) and the WAL cannot restart (that needs every
  read mark free); so every frame not yet archived stays where it is;
* when everything was checkpointed as ``R`` began, SQLite gives ``R`` read mark 0 instead,
  which stops every checkpoint from copying anything; the WAL may then restart once, but only
  while it holds nothing past ``P``.

A pass takes the database's write lock (a write unit that writes nothing) for the moment it
reads the committed end from the wal-index, copies the frames up to it, runs the checkpoint
(when due) and moves ``R`` to the new end: no commit can slip in between, from this process
or another. Compression and the segment's fsync happen after the lock is released. A pass
that cannot get the lock changes nothing (R stays where it is) and the next one retries:
contention never ends a generation. Another process's ``wal_checkpoint(TRUNCATE)`` holds
that lock while it waits for R, which cannot end while frames behind it are not archived,
so the archiver is the side that gives way (its thread's passes wait ``_PASS_LOCK_WAIT_MS``)
and the TRUNCATE returns busy after its own timeout.

So while the archiver runs, a WAL whose salts changed since the last pass restarted exactly at
``P`` and its frames continue the history. When the archiver did not hold ``R`` at ``P`` (first
pass after a start, or after a failure that lost a batch ``R`` had already moved past),
continuity is *proved* instead: same salts, and the frame at
``P`` still carries the checksum archived with it. Anything else -- the WAL was reset or
replaced while nobody watched -- starts a new **generation** (a new id, a new base snapshot:
a verified backup taken into the archive). The writer connection gets
``SQLITE_FCNTL_PERSIST_WAL``, so a clean stop and restart keeps the WAL and the generation.

**Commit times.** A restore "at T" needs the last commit at or before T. SQLite's WAL hook
tells the archiver the moment each commit of this process lands (exact); another process's
commit is timed by the archiver's own looks at the wal-index (every 0.1 s): it happened
after the last look that did not see it and by the first that did, and a restore applies it
only to instants after the later bound.
"""

from __future__ import annotations

import array
import bisect
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw

from bastion import _platform
from bastion._fs import atomic_write, ensure_private_dir, fsync_dir
from bastion._platform.filewatch import BlockingWatch, blocking_watch
from bastion.errors import ArchiveError, BastionError, StoreBusy, StoreError
from bastion.store._errors import translate
from bastion.store._locks import write_lock_holder
from bastion.store.archive import policy
from bastion.store.archive.layout import (
    GenerationInfo,
    list_bases,
    list_generations,
    list_segments,
    new_generation_id,
    write_base_record,
    write_generation,
)
from bastion.store.archive.segment import (
    Commit,
    CommitColumns,
    SegmentDamaged,
    SegmentInfo,
    read_segment,
    segment_name,
    write_segment,
)
from bastion.store.archive.walfile import (
    FRAME_HEADER_BYTES,
    NO_POSITIONAL_IO,
    IndexHeader,
    IndexReader,
    WalFile,
    set_persist_wal,
)
from bastion.store.dialect import require_sqlite

if TYPE_CHECKING:
    from bastion.config import ArchiveConfig
    from bastion.store.engine import Database, WriteTx

__all__ = ["ArchiveStatus", "Archiver", "apply_prune", "compact_segments", "plan_archive_prune"]

log = logging.getLogger("bastion.store.archive")

#: ``fn(kind, subject, data)``: "archive.generation", "archive.base", "archive.failed".
EventSink = Callable[[str, str, Mapping[str, Any]], None]

_ZERO_CHECKSUM = bytes(8)


@dataclasses.dataclass(frozen=True, slots=True)
class ArchiveStatus:
    """Where the archiver is: generation, archived position, passes, the last error."""

    db_name: str
    archive_dir: str
    running: bool
    generation: str | None
    epoch: int
    frame: int
    passes: int
    segments_written: int
    frames_archived: int
    bytes_archived: int
    last_pass_at: float | None
    last_commit_at: float | None
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class _Batch:
    """What one locked phase read: frames to archive and who committed them when."""

    header: IndexHeader
    read_at: float
    first: int = 0
    last: int = 0
    frames: bytes = b""
    new_generation: str | None = None  # the reason, when the history broke
    new_epoch: bool = False
    hooks: list[tuple[float, int]] = dataclasses.field(default_factory=list)
    checkpoint: tuple[int, int, int] | None = None


@dataclasses.dataclass
class _Pending:
    """Frames copied from the WAL, not yet written as a segment (see ``Archiver._flush``)."""

    epoch: int
    first: int
    prev: tuple[int, int]
    prev_checksum: bytes
    since: float
    last: int = 0
    nbytes: int = 0
    read_at: float = 0.0
    chunks: list[bytes] = dataclasses.field(default_factory=list)
    commits: CommitColumns = dataclasses.field(default_factory=CommitColumns)


#: Pending frames past which a segment is written at once.
_PENDING_BYTES = 32 * 1024 * 1024
#: Pending frames past which a segment that cannot be written (full disk) is given up: the
#: frames are dropped from memory and a new generation follows once writing works again.
_PENDING_MAX_BYTES = 4 * _PENDING_BYTES
#: How long a pass of the thread waits for the write lock before it gives way (the position
#: and R are kept, and the next pass retries). Another process's RESTART/TRUNCATE checkpoint
#: holds that lock while it waits for R, which it cannot get while frames behind R are not
#: archived: the archiver, not R, is the side that yields, and it yields fast.
_PASS_LOCK_WAIT_MS = 500
#: The busy handler's step while a pass waits for the write lock: another process that
#: commits and checkpoints in a loop leaves gaps of a few milliseconds, which SQLite's own
#: handler (sleeps growing to 100 ms) keeps missing.
_LOCK_POLL_S = 0.001
#: How long the archive's own TRUNCATE waits for the locks it needs (as bastion's WAL
#: watchdog does: briefly; the frames are archived either way).
_TRUNCATE_WAIT_MS = 1000


class Archiver:
    """Archives ``db``'s WAL into ``archive_root/<db.name>/`` on a background thread.

    ``start()`` begins (and resumes the newest generation when the WAL provably continues
    it); ``stop()`` runs a last pass, then lets SQLite checkpoint on its own again. One per
    database per process. ``sync_now()`` runs a pass on the caller's thread.
    """

    def __init__(
        self,
        db: Database,
        archive_root: Path,
        config: ArchiveConfig,
        *,
        on_event: EventSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        watched_look_s: float = policy.WATCHED_LOOK_S,
    ) -> None:
        require_sqlite(db, "the WAL archive")
        self.db = db
        self.archive_root = Path(archive_root).absolute()
        self.config = config
        self._on_event = on_event
        self._clock = clock
        self._wall = wall
        self._index = IndexReader(db.path)
        self._wal = WalFile(db.path)
        self._lock = threading.Lock()  # one pass at a time (thread, sync_now, stop)
        self._stop = threading.Event()
        self._wake = threading.Event()
        #: Wakes the idle thread on every write to the database's files and every open of
        #: them (None without inotify: the thread looks every POLL_S, see ``_sleep``).
        self._watch: BlockingWatch | None = None
        self._watched_look_s = watched_look_s
        self._wakeups = 0  # turns of the thread's loop (tests count them)
        self._thread: threading.Thread | None = None
        self._reader: apsw.Connection | None = None  # holds R between passes
        self._checkpointer: apsw.Connection | None = None
        self._protected = False  # R held without a break since the last locked phase
        # The archived position.
        self._gen: GenerationInfo | None = None
        self._epoch = 0
        self._salt = b""
        self._pos = 0
        self._checksum = _ZERO_CHECKSUM
        self._page_size = 0
        #: The last archived frame's position (or the generation's start): what the next
        #: segment continues. Epochs without frames leave no segment and are skipped.
        self._prev_end: tuple[int, int] = (0, 0)
        self._tip_db_file: tuple[int, int, int, int] | None = None
        self._pending: _Pending | None = None
        self._last_commit_t: float | None = None
        self._last_read_at = 0.0  # when the last locked phase read the WAL
        # Commits of this process since the last locked phase, from SQLite's WAL hook.
        self._hooks: list[tuple[float, int]] = []
        self._nudge_at = config.checkpoint_frames
        self._nudged = False
        # Looks at the wal-index between passes: (wall time, salt, committed frames).
        self._looks: list[tuple[float, bytes, int]] = []
        self._schedule = policy.ScheduleState()
        self._frames_since_checkpoint = 0
        self._needs_base = False
        self._passes = self._segments = self._frames = self._bytes = 0
        self._last_pass_at: float | None = None
        self._last_error: str | None = None
        #: Since when passes of the thread have been giving way to another process's lock.
        self._busy_since: float | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> Archiver:
        """Open the archiver's connections, take over checkpoints, start the thread."""
        if self._thread is not None:
            raise RuntimeError(f"the archiver of {self.db.path} is running already")
        if _platform.pread is None or not _platform.FD_DIRS:
            # The wal-index is read through SQLite's own descriptor, found by listing ours.
            raise ArchiveError(NO_POSITIONAL_IO, hint="Leave [archive] off on this system")
        try:
            ensure_private_dir(self.archive_root / self.db.name)
        except OSError as err:
            raise ArchiveError(
                f"cannot use {self.archive_root} for the archive: {err.strerror or err}",
                path=str(self.archive_root),
            ) from err
        # Before the first look: a commit after it is an event the thread is woken by.
        path = self.db.path
        self._watch = blocking_watch(
            path.parent, [path.name, f"{path.name}-wal", f"{path.name}-shm"], opens=True
        )
        self._reader = self._side_connection()
        self._checkpointer = self._side_connection()
        self._resume()
        writer = self.db._driver_connection()
        set_persist_wal(writer)
        writer.set_wal_hook(self._on_commit)  # replaces SQLite's autocheckpoint hook
        self.db._wal_owner = self
        try:
            # The first pass now: from here on no frame can leave the WAL unarchived. The
            # base snapshot a new generation needs follows on the thread.
            self._pass(checkpoint=False)
        except BaseException:
            self._thread = None
            self._give_back()
            raise
        self._thread = threading.Thread(
            target=self._loop, name=f"bastion-archive:{self.db.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """A last pass, then stop the thread and give checkpoints back to SQLite. Idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        self._poke()
        thread.join()
        if not self.db.closed:
            try:
                self._final_pass()
            except (BastionError, apsw.Error, OSError) as err:
                self._failed(err)
        self._give_back()

    def _give_back(self) -> None:
        """Checkpoints back to SQLite; the archiver's connections closed."""
        if not self.db.closed:
            writer = self.db._driver_connection()
            with contextlib.suppress(apsw.Error):
                writer.set_wal_hook(None)
                writer.wal_autocheckpoint(1000)  # SQLite's default hook, back in place
        self.db._wal_owner = None
        self._end_read()
        for conn in (self._reader, self._checkpointer):
            if conn is not None:
                with contextlib.suppress(apsw.Error):
                    conn.close()
        self._reader = self._checkpointer = None
        self._wal.close()
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    @property
    def running(self) -> bool:
        """Whether the thread runs (between start and stop)."""
        return self._thread is not None

    def __enter__(self) -> Archiver:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wake(self) -> None:
        """Make the thread look now (a pass runs if one is due)."""
        self._poke()

    def _poke(self) -> None:
        self._wake.set()
        watch = self._watch
        if watch is not None:
            watch.interrupt()

    def status(self) -> ArchiveStatus:
        """Where the archiver is now."""
        return ArchiveStatus(
            db_name=self.db.name,
            archive_dir=str(self.archive_root),
            running=self.running,
            generation=self._gen.id if self._gen else None,
            epoch=self._epoch,
            frame=self._pos,
            passes=self._passes,
            segments_written=self._segments,
            frames_archived=self._frames,
            bytes_archived=self._bytes,
            last_pass_at=self._last_pass_at,
            last_commit_at=self._last_commit_t,
            last_error=self._last_error,
        )

    # --- the thread ----------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wakeups += 1
            header = self._look()
            nudged, self._nudged = self._nudged, False
            plan = policy.plan_pass(
                self._schedule,
                now=self._clock(),
                wall=self._wall(),
                interval_s=self.config.interval_s,
                snapshot_interval_s=self.config.snapshot_interval_s,
                checkpoint_frames=self.config.checkpoint_frames,
                frames_since_checkpoint=self._frames_since_checkpoint,
                nudged=nudged,
            )
            try:
                if plan.sync and not (nudged or plan.checkpoint) and self._nothing_new(header):
                    pass  # a pass would copy nothing: no write transaction for it
                elif plan.sync or self._gen is None:
                    self._thread_pass(checkpoint=plan.checkpoint)
                if self._gen is not None and (plan.snapshot or self._needs_base):
                    self._snapshot()
                if plan.prune:
                    self._schedule = dataclasses.replace(self._schedule, last_prune=self._clock())
                    self.prune()
            except Exception as err:  # the archiver must outlive any one failure
                if self.db.closed:
                    return
                self._failed(err)
            self._sleep(header, plan.wait_s)

    def _sleep(self, header: IndexHeader | None, wait_s: float) -> None:
        """Until the next turn of the loop (issue 22 §7: an idle daemon must not wake on a
        timer). With nothing to copy, a file watch, and no other process attached to the
        database, nothing can need a look before an event: this process's commits and
        another process's alike write the ``-wal`` (an event), and another process must
        open the database's files before it can commit (an event; from then on it is
        attached and the looks every POLL_S that time its commits resume). So the thread
        sleeps until an event, a wake() (a checkpoint nudge, stop) or the schedule's next
        timer (snapshot, prune); WATCHED_LOOK_S is only a safety net. Otherwise -- frames
        to copy (they must be copied within interval_s), another process attached (its
        commits are timed by looks, within POLL_S), no watch -- the wait is the plan's."""
        watch = self._watch
        if (
            watch is not None
            and self._nothing_new(header)
            and self._index.attached_elsewhere() is False
        ):
            timer = policy.next_timer_s(
                self._schedule,
                now=self._clock(),
                wall=self._wall(),
                snapshot_interval_s=self.config.snapshot_interval_s,
            )
            if not self._wake.is_set():
                watch.wait(min(timer, self._watched_look_s))
            if watch.lost:  # the directory moved away: no more events, look every POLL_S
                self._watch = None
                watch.close()
        else:
            self._wake.wait(wait_s)
        self._wake.clear()

    def _thread_pass(self, *, checkpoint: bool) -> None:
        """A pass of the thread: it waits for the write lock at most ``_PASS_LOCK_WAIT_MS``
        and gives way when another process holds it longer (the archived position and R are
        kept: nothing behind R can leave the WAL, and the next wake-up retries). Only when
        passes have been giving way for longer than the busy timeout is it reported."""
        try:
            self._pass(checkpoint=checkpoint, wait_ms=_PASS_LOCK_WAIT_MS)
        except StoreBusy as err:
            now = self._clock()
            if self._busy_since is None:
                self._busy_since = now
            if now - self._busy_since < self.db.config.busy_timeout_ms / 1000:
                log.info("archiving pass of %s deferred: %s", self.db.path, err.message)
                return
            raise
        self._busy_since = None

    def _failed(self, err: BaseException) -> None:
        message = err.message if isinstance(err, BastionError) else f"{type(err).__name__}: {err}"
        if message != self._last_error:
            log.error("archiving %s failed: %s", self.db.path, message)
            if self._on_event:
                with contextlib.suppress(Exception):
                    self._on_event("archive.failed", self.db.name, {"error": message})
        self._last_error = message

    def _nothing_new(self, header: IndexHeader | None) -> bool:
        """Whether a pass now would copy nothing: the wal-index's committed end and salt are
        where the last pass left them (no commit since, of any process) and no segment waits
        to be written. An idle daemon then pays a look at the -shm, not a write transaction
        every ``interval_s`` (issue 22 §7). The looks keep timing other processes' commits;
        a pass runs again as soon as one shows."""
        return (
            header is not None
            and self._gen is not None
            and self._pending is None
            and not self._hooks
            and header.salt == self._salt
            and header.mx_frame == self._pos
        )

    def _look(self) -> IndexHeader | None:
        """Sample the committed end of the WAL: it times other processes' commits."""
        header = self._index.read(attempts=3)
        if header is not None:
            look = (self._wall(), header.salt, header.mx_frame)
            if not self._looks or self._looks[-1][1:] != look[1:]:
                self._looks.append(look)
            else:
                self._looks[-1] = look  # unchanged: keep the latest time it was still so
            del self._looks[:-1000]
        return header

    def _on_commit(self, _conn: Any, _name: str, pages: int) -> int:
        """SQLite's WAL hook on this process's writer, after every commit (the writer
        thread, under the writer lock): note when, and wake the archiver when a checkpoint
        is due. Runs on every commit: keep it to an append."""
        self._hooks.append((time.time(), pages))
        if pages >= self._nudge_at and not self._nudged:
            self._nudged = True
            self._poke()
        return 0  # SQLITE_OK

    # --- one pass ------------------------------------------------------------------------

    def sync_now(self, *, checkpoint: bool = False) -> ArchiveStatus:
        """Run a pass now on the calling thread: archive everything committed so far."""
        if self._reader is None:
            raise RuntimeError("the archiver is not started")
        self._look()
        self._pass(checkpoint=checkpoint)
        with self._lock:
            self._flush()
        return self.status()

    def shrink_wal(self) -> bool:
        """The WAL watchdog's request when the WAL passed its cap: see :meth:`truncate_wal`."""
        return self.truncate_wal()

    def truncate_wal(self) -> bool:
        """``wal_checkpoint(TRUNCATE)`` the archive's way (what ``wal.checkpoint`` runs for
        RESTART and TRUNCATE while an archiver owns the WAL): archive everything, empty the
        WAL, and hold the new epoch from its first frame. Returns whether the WAL was emptied
        (a reader of another process can keep it busy; the frames are archived either way)."""
        with self._lock:
            if self._reader is None:
                return False
            try:
                point = self._truncating_pass(hold=True)
            except StoreBusy as err:
                # Another process holds the write lock (a TRUNCATE of its own, waiting for
                # R): nothing changed, the next pass archives; the WAL was not emptied.
                log.info("truncating the WAL of %s deferred: %s", self.db.path, err.message)
                return False
            return point is not None

    def _pass(self, *, checkpoint: bool, wait_ms: int | None = None) -> _Batch | None:
        """Archive what is committed (and checkpoint). A pass that cannot get the write lock
        within ``wait_ms`` (default: the busy timeout) raises StoreBusy having changed
        nothing: R still holds the archived position, so the next pass continues it."""
        with self._lock:
            if self._reader is None or self._checkpointer is None:
                return None
            if checkpoint:
                # Copy first, then checkpoint up to the copied end without the write lock
                # (the bulk of a checkpoint's I/O and fsyncs); the locked checkpoint below
                # has only the frames of the last moments left to copy into the database.
                self._pass_locked(checkpoint=False, wait_ms=wait_ms)
                self._checkpoint_upto_reader()
            return self._pass_locked(checkpoint=checkpoint, wait_ms=wait_ms)

    def _pass_locked(self, *, checkpoint: bool, wait_ms: int | None = None) -> _Batch:
        """One locked phase and what follows it (the caller holds ``self._lock``)."""
        batch = self._under_write_lock(lambda tx: self._locked(tx, checkpoint), wait_ms)
        self._keep(batch)
        self._passes += 1
        self._last_pass_at = batch.read_at
        self._last_error = None
        self._schedule = dataclasses.replace(self._schedule, last_sync=self._clock())
        return batch

    def _under_write_lock(
        self,
        fn: Callable[[WriteTx], _Batch],
        wait_ms: int | None,
        *,
        then: Callable[[apsw.Connection, _Batch], None] | None = None,
    ) -> _Batch:
        """``fn`` inside a write transaction that writes nothing, on the writer, the lock
        waited for at most ``wait_ms`` (polled: see ``_LOCK_POLL_S``); then ``then`` on the
        writer outside the transaction, in the same unit (no writer of this process between).

        Which failure leaves R where: not getting the lock, or ``fn`` failing before it moves
        R (see :meth:`_locked`), leaves R at the archived position and ``_protected`` as it
        was -- contention never ends a generation. Once R has moved, the batch read is what
        R's move is safe for; a failure to commit loses it, so R no longer proves anything."""
        wait = self.db.config.busy_timeout_ms if wait_ms is None else wait_ms

        def unit(tx: WriteTx) -> _Batch:
            conn = tx._conn
            deadline = time.monotonic() + wait / 1000

            def poll(_tries: int) -> bool:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(_LOCK_POLL_S)
                return True

            conn.setbusyhandler(poll)
            try:
                conn.execute("BEGIN IMMEDIATE")
            except apsw.BusyError as err:
                raise self._busy(err, wait) from err
            finally:
                conn.setbusytimeout(self.db.config.busy_timeout_ms)
            try:
                batch = fn(tx)
            except BaseException:
                with contextlib.suppress(apsw.Error):
                    conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except apsw.Error as err:
                self._protected = False
                with contextlib.suppress(apsw.Error):
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                raise translate(err, path=str(self.db.path), what="archiving") from err
            if then is not None:
                then(conn, batch)
            return batch

        return self.db.run_outside_transaction(unit)

    def _busy(self, err: apsw.Error, wait_ms: int) -> StoreError:
        """StoreBusy naming the lock's holder (as ``Database.write`` does)."""
        holder = write_lock_holder(self.db.path)
        if holder is None:
            return translate(err, path=str(self.db.path), what="archiving")
        return StoreBusy(
            f"{self.db.path} stayed locked past {wait_ms} ms while archiving: process "
            f"{holder['pid']} ({holder['name'] or 'unknown program'}) holds the write lock",
            holder=holder,
        )

    def _keep(self, batch: _Batch) -> None:
        """After the locked phase: the batch into the archive (or the pending segment).

        A segment that cannot be written (full disk) stays pending in memory and is written
        by a later pass: the frames are held, so the history goes on. Only a failure that
        loses a batch ends the generation (R has moved past frames nothing holds), or
        pending frames grown past ``_PENDING_MAX_BYTES``."""
        try:
            self._store(batch)
        except BaseException:
            self._protected = False
            self._gen = None
            self._pending = None
            raise
        try:
            self._flush(force=False)
        except BaseException:
            pending = self._pending
            if pending is not None and pending.nbytes > _PENDING_MAX_BYTES:
                self._protected = False
                self._gen = None
                self._pending = None
            raise

    def _counted(self, mode: str) -> None:
        if self.db.tally is not None:  # GET /metrics' checkpoint count
            self.db.tally.checkpointed(mode)

    def _checkpoint_upto_reader(self) -> None:
        """Before the locked phase: checkpoint up to R's snapshot (the archived position).
        The bulk of the copying happens here, without the write lock; the locked phase then
        has only the frames of the last moments left."""
        assert self._checkpointer is not None
        with contextlib.suppress(apsw.Error):
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self._counted("PASSIVE")

    def _locked(self, tx: WriteTx, checkpoint: bool) -> _Batch:
        """With the write lock held (no commit anywhere can happen meanwhile): read what is
        committed, copy the new frames, checkpoint if asked, move R to the new end.

        Runs inside a write unit that writes nothing (its COMMIT writes no frame). Keep it
        short: every writer waits for it. Compression and fsync happen after it."""
        header = self._index.read()
        if header is None:
            raise ArchiveError(
                f"cannot read the wal-index of {self.db.path}",
                hint="Is the database in WAL mode and open in this process?",
            )
        batch = _Batch(header, self._wall())
        batch.hooks, self._hooks = self._hooks, []
        if self._gen is None:
            batch.new_generation = "no generation to continue (first start or restore)"
        elif header.salt == self._salt:
            if header.mx_frame < self._pos or not (self._protected or self._frame_at_pos_ok()):
                batch.new_generation = (
                    "the WAL no longer holds the archived position (it was rewritten while "
                    "no archiver ran)"
                )
        elif self._protected or self._resumable() or self._restarted_once(header):
            # Restarted at P while R was held, or the database file is untouched since the
            # archiver stopped at P with an empty WAL: the history goes on in a new epoch.
            batch.new_epoch = True
        else:
            batch.new_generation = "the WAL was reset while no archiver ran"
        if batch.new_generation is None and header.mx_frame and header.page_size != self._page_size:
            batch.new_generation = "the page size changed"
        if batch.new_generation is None:
            batch.first = 1 if batch.new_epoch else self._pos + 1
            batch.last = header.mx_frame
            if batch.last >= batch.first:
                batch.frames = self._wal.frames(batch.first, batch.last, header.page_size)
                _check_frames(batch, self.db.path)
        # Hand R over to the new end. A checkpoint in between, when asked: everything up to
        # the end is read, so the WAL may restart after it (R's successor takes read mark 0
        # when the checkpoint copied everything, and the next writer starts a new epoch).
        # Everything above left R where it was: a failure there (the WAL unreadable, a frame
        # of another epoch) keeps the position protected. From here R protects the batch's
        # end, which is the archived position only once the batch is stored.
        self._protected = False
        self._end_read()
        if checkpoint:
            batch.checkpoint = self._locked_checkpoint()
        self._begin_read()
        return batch

    def _locked_checkpoint(self) -> tuple[int, int, int] | None:
        """PASSIVE on the archiver's checkpointer, R released (the caller holds the write
        lock and has read everything up to the end)."""
        assert self._checkpointer is not None
        try:
            row = self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            busy, log_frames, done = (int(str(v)) for v in row[0])
            self._counted("PASSIVE")
        except apsw.Error as err:
            log.warning("checkpoint of %s failed: %s", self.db.path, err)
            return None
        return (busy, log_frames, done)

    # --- a clean stop, and resuming after it ---------------------------------------------

    def _final_pass(self) -> None:
        """Archive everything, then leave a *resume point*: checkpoint the WAL into the
        database file and empty it (TRUNCATE), and record the file's identity next to the
        archived position. A later start finds the WAL reset (any connection that closes last
        deletes it) but can prove nothing happened in between: a database file that still
        has that size, inode and modification time holds exactly the archived state, and the
        WAL's frames since are a new epoch of the same history. Any doubt leaves no resume
        point (the next start begins a new generation)."""
        with self._lock:
            point = self._truncating_pass(hold=False)
            gen = self._gen
            if gen is None:
                return
            marker = gen.path / "resume.json"
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()
            if point is not None:
                body = {
                    "epoch": self._epoch,
                    "frame": self._pos,
                    "salt": self._salt.hex(),
                    "db": point,
                    # Nothing was committed between the last archived commit and this time.
                    "at": self._last_read_at,
                }
                atomic_write(marker, json.dumps(body) + "\n")

    def _truncating_pass(self, *, hold: bool) -> dict[str, int] | None:
        """A pass that checkpoints, then TRUNCATE, in one unit on the writer (no writer of
        this process runs meanwhile). Returns the database file's identity when the WAL was
        emptied right after the archived end with no other connection's commit in between;
        then, with ``hold``, R goes on holding the empty WAL (the next epoch continues the
        history); without, R is released (a clean stop)."""
        point: dict[str, int] | None = None
        version: Any = None
        # The bulk of the copying into the database, without the write lock (as _pass does).
        self._checkpoint_upto_reader()

        def locked(tx: WriteTx) -> _Batch:
            nonlocal version
            batch = self._locked(tx, True)
            # A reader of an older snapshot (a backup, a reader of the pool) keeps the
            # checkpoint from copying everything, and R from read mark 0: try again for a
            # moment, as a TRUNCATE waits for readers. Ending and taking R again is safe
            # here: the write lock is held, and everything up to the end is in the batch.
            deadline = time.monotonic() + _TRUNCATE_WAIT_MS / 1000
            while not _copied_all(batch.checkpoint) and time.monotonic() < deadline:
                time.sleep(_LOCK_POLL_S * 5)
                self._protected = False
                self._end_read()
                batch.checkpoint = self._locked_checkpoint()
                self._begin_read()
            version = tx._conn.pragma("data_version")
            return batch

        def truncate(writer: apsw.Connection, batch: _Batch) -> None:
            nonlocal point
            point = self._truncate(writer, batch, version)

        batch = self._under_write_lock(locked, None, then=truncate)
        self._keep(batch)
        self._flush()
        self._passes += 1
        self._last_pass_at = batch.read_at
        self._last_error = None
        if not hold:
            self._end_read()
            self._protected = False
        return point

    def _truncate(
        self, writer: apsw.Connection, batch: _Batch, version: Any
    ) -> dict[str, int] | None:
        """TRUNCATE on the writer with R still held, then check that no other connection
        committed since the locked read (``data_version`` moves only for others' commits),
        and under the write lock that the WAL is empty and restarted once.

        R is never released for it: between the locked phase and the TRUNCATE (which takes
        the write lock itself) another process may commit, and without R a TRUNCATE would
        copy those frames into the database and drop them from the WAL unarchived. R gets
        read mark 0 when the locked checkpoint copied everything (see :meth:`_locked`); with
        it held a TRUNCATE still restarts the WAL -- restarting waits only for read marks
        1..N -- while no frame past the archived end can be checkpointed, so the WAL can
        restart only exactly there. Anything else (frames past R, a reader elsewhere) and
        the TRUNCATE is not tried: it could only succeed by giving up R."""
        header = batch.header
        if not _copied_all(batch.checkpoint) or not self._protected:
            return None
        now = self._index.read()
        if now is None or now.salt != header.salt or now.mx_frame != header.mx_frame:
            return None  # committed since the locked phase: R protects those frames
        try:
            deadline = time.monotonic() + _TRUNCATE_WAIT_MS / 1000

            def poll(_tries: int) -> bool:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(_LOCK_POLL_S)
                return True

            writer.setbusyhandler(poll)
            try:
                row = writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()[0]
                self._counted("TRUNCATE")
            finally:
                writer.setbusytimeout(self.db.config.busy_timeout_ms)
            if int(str(row[0])) or writer.pragma("data_version") != version:
                return None
            writer.execute("BEGIN IMMEDIATE")
            try:
                after = self._index.read()
                salt1 = (int.from_bytes(header.salt[:4], "big") + 1) & 0xFFFFFFFF
                if after is None or after.mx_frame or after.salt[:4] != salt1.to_bytes(4, "big"):
                    return None
                st = os.stat(self.db.path)
            finally:
                writer.execute("COMMIT")
        except (apsw.Error, OSError):
            return None
        return {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}

    def _db_file(self) -> tuple[int, int, int, int] | None:
        try:
            st = os.stat(self.db.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def _restarted_once(self, header: IndexHeader) -> bool:
        """After a crash (R gone): the WAL restarted exactly once since the archived position
        (salt-1 one higher) and the database file is untouched since the last segment was
        written. A restart needs every frame of the old epoch checkpointed, and a checkpoint
        of any frame after the archived position would have written the file; so the old
        epoch ended where the archive did, and the new epoch's frames continue it. A file
        system with coarse modification times proves nothing here."""
        recorded = self._tip_db_file
        if recorded is None or recorded[3] % 1_000_000 == 0:
            return False
        salt1 = (int.from_bytes(self._salt[:4], "big") + 1) & 0xFFFFFFFF
        return header.salt[:4] == salt1.to_bytes(4, "big") and self._db_file() == recorded

    def _resumable(self) -> bool:
        """Whether the generation's resume point matches the archived position and the
        database file is untouched since (see :meth:`_final_pass`). Read with the write lock
        held, so no checkpoint of this epoch's frames can be writing the file meanwhile...
        except a PASSIVE one of another process, which changes the time and so says no."""
        if self._gen is None:
            return False
        try:
            body = json.loads((self._gen.path / "resume.json").read_text(encoding="utf-8"))
            st = os.stat(self.db.path)
            point = body["db"]
            return (body["epoch"], body["frame"], body["salt"]) == (
                self._epoch,
                self._pos,
                self._salt.hex(),
            ) and (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == (
                point["dev"],
                point["ino"],
                point["size"],
                point["mtime_ns"],
            )
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def _frame_at_pos_ok(self) -> bool:
        if self._pos == 0:
            return True
        frame = self._wal.frame_header(self._pos, self._page_size)
        return frame is not None and frame.salt == self._salt and frame.checksum == self._checksum

    def _begin_read(self) -> None:
        assert self._reader is not None
        try:
            self._reader.execute("BEGIN")
            self._reader.execute("SELECT count(*) FROM sqlite_schema").fetchall()
        except apsw.Error as err:
            self._protected = False
            self._end_read()
            raise translate(
                err, path=str(self.db.path), what="holding the archive's snapshot"
            ) from err
        self._protected = True

    def _end_read(self) -> None:
        if self._reader is not None and self._reader.in_transaction:
            with contextlib.suppress(apsw.Error):
                self._reader.execute("COMMIT")

    def _store(self, batch: _Batch) -> None:
        """After the lock: start a generation, or add the frames to the pending segment;
        move the position. The pending segment is written by :meth:`_flush`."""
        header = batch.header
        if batch.new_generation is not None:
            self._flush()
            self._start_generation(batch)
            self._last_read_at = batch.read_at
            return
        if batch.checkpoint is not None:
            self._frames_since_checkpoint = 0
            self._nudge_at = self.config.checkpoint_frames
        if batch.new_epoch:
            self._flush()  # a segment holds one epoch
            self._epoch += 1
            self._salt = header.salt
            self._pos, self._checksum = 0, _ZERO_CHECKSUM
        if not batch.frames:
            self._last_read_at = batch.read_at
            return
        assert self._gen is not None
        commits = self._commit_times(batch)
        pending = self._pending
        if pending is None:
            pending = self._pending = _Pending(
                epoch=self._epoch,
                first=batch.first,
                prev=self._prev_end,
                prev_checksum=self._checksum,
                since=self._clock(),
            )
        pending.chunks.append(batch.frames)
        pending.commits.extend(commits)
        pending.last = batch.last
        pending.nbytes += len(batch.frames)
        pending.read_at = batch.read_at
        size = FRAME_HEADER_BYTES + self._page_size
        self._pos = batch.last
        self._prev_end = (self._epoch, batch.last)
        self._checksum = batch.frames[-size + 16 : -size + 24]
        self._last_read_at = batch.read_at
        if commits:
            self._last_commit_t = commits.t_hi_us[-1] / 1e6
        count = batch.last - batch.first + 1
        self._frames += count
        self._bytes += len(batch.frames)
        self._frames_since_checkpoint += count
        if batch.checkpoint is None:
            self._nudge_at = batch.last + self.config.checkpoint_frames

    def _flush(self, *, force: bool = True) -> None:
        """Write the pending segment (atomically: temp, fsync, rename, fsync dir). Unless
        ``force``, only once it is ``interval_s`` old or large: passes a checkpoint asks for
        come many times a second under heavy writing, and one segment (one fsync) for all of
        them costs the disk far less. Frames waiting here are safe from SQLite (copied) but
        not from a crash, which starts a new generation; the wait is at most ``interval_s``."""
        pending = self._pending
        if pending is None or self._gen is None:
            self._pending = None
            return
        young = self._clock() - pending.since < self.config.interval_s
        if not force and young and pending.nbytes < _PENDING_BYTES:
            return
        info = write_segment(
            self._gen.segments_dir / segment_name(pending.epoch, pending.first, pending.last),
            generation=self._gen.id,
            epoch=pending.epoch,
            salt=self._salt,
            page_size=self._page_size,
            first=pending.first,
            frames=pending.chunks,
            prev=pending.prev,
            prev_checksum=pending.prev_checksum,
            commits=pending.commits,
            created_at=pending.read_at,
            db_file=self._db_file(),
        )
        self._pending = None  # only once written: a failed write is retried by a later pass
        self._tip_db_file = info.db_file
        self._segments += 1

    def _commit_times(self, batch: _Batch) -> CommitColumns:
        """Each commit frame of the batch with its time (see the module docstring).

        A commit of this process has the WAL hook's time. Another's happened after the last
        look (or pass) that did not see it and by the first look that did -- and before any
        later commit of this process, and after any earlier one: the bounds are tightened
        both ways, so ``t_hi`` never decreases along the WAL and "every commit with
        ``t_hi <= T``" is always a prefix of the history.
        """
        size = FRAME_HEADER_BYTES + self._page_size
        frames = batch.frames
        # The "database size after commit" field of every frame header, without a copy: a
        # frame is a whole number of 4-byte words, the field is the header's second word.
        # Non-zero marks a commit frame (its byte order does not matter for that test).
        fields = memoryview(frames).cast("I")[1 :: size // 4]
        count = len(fields) - fields.tolist().count(0)
        ours = [(t, n) for t, n in batch.hooks if batch.first <= n <= batch.last]
        if len(ours) == count:
            # Every commit of the batch is this process's (the usual case): the WAL hook
            # said when, exactly. Columns straight from it, no object per commit.
            sizes = array.array("I", fields.tobytes())
            if sys.byteorder == "little":
                sizes.byteswap()
            commit_frames = [n for _, n in ours]
            times = [int(t * 1e6) for t, _ in ours]
            if self._looks:
                self._looks = self._looks[-1:]
            return CommitColumns(
                commit_frames, [sizes[n - batch.first] for n in commit_frames], times, list(times)
            )
        mine = {pages: t for t, pages in batch.hooks}
        # Looks of this epoch, in time order; the committed end only grows within an epoch.
        looks = [(t, mx) for t, salt, mx in self._looks if salt == batch.header.salt]
        look_ends = [mx for _, mx in looks]
        floor = self._last_read_at
        found: list[tuple[int, int, float, float]] = []
        for i in [i for i, v in enumerate(fields) if v]:
            n = batch.first + i
            pages = struct.unpack_from(">I", frames, i * size + 4)[0]
            if n in mine:
                t_lo = t_hi = mine[n]
            else:
                seen = bisect.bisect_left(look_ends, n)  # the first look that saw it
                t_hi = looks[seen][0] if seen < len(looks) else batch.read_at
                t_lo = looks[seen - 1][0] if seen > 0 else floor
            found.append((n, int(pages), max(t_lo, floor), min(t_hi, batch.read_at)))
        # Later commits bound earlier ones from above, earlier ones bound later ones from below.
        ceilings: list[float] = []
        ceiling = batch.read_at
        for _, _, _, t_hi in reversed(found):
            ceiling = min(ceiling, t_hi)
            ceilings.append(ceiling)
        ceilings.reverse()
        commits: list[Commit] = []
        low = floor
        for (n, pages, t_lo, _), t_hi in zip(found, ceilings, strict=True):
            low = max(low, t_lo)
            commits.append(Commit(n, pages, min(low, t_hi), t_hi))
        if self._looks:
            self._looks = self._looks[-1:]
        return CommitColumns.of(commits)

    # --- generations and bases -----------------------------------------------------------

    def _resume(self) -> None:
        """Take the newest generation's archived end as the position to continue from; the
        first locked phase proves (or refutes) that the WAL still continues it."""
        generations = list_generations(self.archive_root, self.db.name)
        if not generations:
            return
        gen = generations[-1]
        segments, _ = list_segments(gen)
        self._gen = gen
        self._page_size = gen.page_size
        if segments:
            tip = max(segments, key=lambda s: s.end)
            self._epoch, self._salt, self._pos = tip.epoch, bytes.fromhex(tip.salt), tip.last
            self._prev_end = tip.end
            self._tip_db_file = tip.db_file
            self._checksum = bytes.fromhex(tip.last_checksum)
            self._last_commit_t = tip.columns.t_hi_us[-1] / 1e6 if tip.columns else None
            # Frames found after a restart were committed after this (and before the look).
            self._last_read_at = max(self._last_commit_t or 0.0, tip.created_at)
        else:
            self._epoch, self._salt = 0, bytes.fromhex(gen.start_salt)
            self._pos, self._checksum = gen.start_frame, bytes.fromhex(gen.start_checksum)
            self._prev_end = (0, gen.start_frame)
            self._last_read_at = gen.created_at
        bases = list_bases(gen)
        self._needs_base = not bases
        if bases:
            self._schedule = dataclasses.replace(
                self._schedule, last_base_wall=max(b.created_at for b in bases)
            )

    def _start_generation(self, batch: _Batch) -> None:
        header = batch.header
        checksum = _ZERO_CHECKSUM
        if header.mx_frame:
            frame = self._wal.frame_header(header.mx_frame, header.page_size)
            checksum = frame.checksum if frame is not None else _ZERO_CHECKSUM
        reason = batch.new_generation or ""
        # An empty WAL's index has no page size yet: ask the database.
        page_size = header.page_size if header.mx_frame else self._db_page_size()
        gen = write_generation(
            self.archive_root,
            self.db.name,
            new_generation_id(dt.datetime.fromtimestamp(batch.read_at, dt.UTC)),
            created_at=batch.read_at,
            reason=reason,
            page_size=page_size,
            salt=header.salt,
            frame=header.mx_frame,
            checksum=checksum,
        )
        self._gen = gen
        self._epoch, self._salt, self._pos = 0, header.salt, header.mx_frame
        self._prev_end = (0, header.mx_frame)
        self._checksum, self._page_size = checksum, page_size
        self._last_commit_t = None
        self._frames_since_checkpoint = 0
        self._needs_base = True
        self._schedule = dataclasses.replace(self._schedule, last_base_wall=None)
        log.info("archive of %s: new generation %s (%s)", self.db.path, gen.id, reason)
        if self._on_event:
            with contextlib.suppress(Exception):
                self._on_event(
                    "archive.generation", self.db.name, {"generation": gen.id, "reason": reason}
                )

    def snapshot_now(self) -> Path:
        """Take a base snapshot of the current generation now; returns the backup's path."""
        if self._gen is None:
            self.sync_now()
        return self._snapshot()

    def _snapshot(self) -> Path:
        """A verified backup into the generation's ``bases/``, bracketed by two positions."""
        from bastion.store.backup import create_backup, utc_stamp

        with self._lock:
            gen = self._gen
            if gen is None:
                raise ArchiveError(f"no generation of {self.db.name} to snapshot")
            lo = (self._epoch, self._pos)
        started = self._wall()
        target = gen.bases_dir / f"base-{utc_stamp(dt.datetime.fromtimestamp(started, dt.UTC))}.db"
        try:
            result = create_backup(self.db, gen.bases_dir, to=target)
        except StoreError:
            self._schedule = dataclasses.replace(self._schedule, base_failed_at=self._clock())
            raise
        self._pass(checkpoint=False)  # archives at least up to the backup's snapshot
        with self._lock:
            if self._gen is not gen:
                # The history broke meanwhile: this backup is no base of the new generation.
                raise ArchiveError(f"generation {gen.id} ended while its base was taken")
            hi = (self._epoch, self._pos)
            at_start = hi == (0, gen.start_frame)
            usable = gen.created_at if at_start or self._last_commit_t is None else None
            usable_from = usable if usable is not None else float(self._last_commit_t or started)
        write_base_record(
            gen, result.path, created_at=started, lo=lo, hi=hi, usable_from=usable_from
        )
        self._needs_base = False
        self._schedule = dataclasses.replace(
            self._schedule, last_base_wall=started, base_failed_at=None
        )
        if self._on_event:
            with contextlib.suppress(Exception):
                self._on_event(
                    "archive.base",
                    self.db.name,
                    {"generation": gen.id, "path": str(result.path)},
                )
        return result.path

    # --- retention -----------------------------------------------------------------------

    def prune(self) -> policy.PrunePlan:
        """DESTRUCTIVE: delete what :func:`policy.plan_prune` drops from this database's
        archive (older than ``[archive] retain``, never what a restore in range needs), then
        merge the current generation's segments older than ``COMPACT_AFTER_S``."""
        plan = plan_archive_prune(
            self.archive_root, self.db.name, wall=self._wall(), retain_s=self.config.retain_s
        )
        apply_prune(plan)
        gen = self._gen
        if gen is not None:
            compact_segments(gen, before=self._wall() - COMPACT_AFTER_S)
        return plan

    # --- connections ---------------------------------------------------------------------

    def _db_page_size(self) -> int:
        assert self._checkpointer is not None
        return int(str(self._checkpointer.pragma("page_size")))

    def _side_connection(self) -> apsw.Connection:
        """A connection of the archiver's own (read-write: checkpoints need it), opened the
        way the database opens its own (``Database._side_connection``: same VFS, and so an
        encrypted database's key)."""
        try:
            return self.db._side_connection()
        except apsw.Error as err:
            raise translate(err, path=str(self.db.path), what="opening for archiving") from err


def _copied_all(checkpoint: tuple[int, int, int] | None) -> bool:
    """Whether a checkpoint's (busy, log, checkpointed) says every frame is in the database."""
    return checkpoint is not None and checkpoint[1] == checkpoint[2]


def _check_frames(batch: _Batch, path: Path) -> None:
    """The frames read are all there, and the first and last carry the epoch's salt. (Every
    frame's salt is checked when a segment is read back; this runs under the write lock.)"""
    size = FRAME_HEADER_BYTES + batch.header.page_size
    want = (batch.last - batch.first + 1) * size
    if len(batch.frames) != want:
        raise ArchiveError(
            f"the WAL of {path} ends before its committed frame {batch.last}",
            hint="The WAL was cut short under SQLite; run `bastion db check`.",
        )
    salt = batch.header.salt
    frames = batch.frames
    if frames[8:16] != salt or frames[want - size + 8 : want - size + 16] != salt:
        raise ArchiveError(
            f"frames {batch.first}..{batch.last} of {path}-wal are not of the current WAL",
            hint="The WAL was changed outside SQLite; a new generation follows.",
        )


#: Segments older than this are merged (a pass a second would leave 86,400 files a day).
COMPACT_AFTER_S = 600.0
#: Frames per merged segment, at most (uncompressed).
COMPACT_MAX_BYTES = 64 * 1024 * 1024


def compact_segments(
    gen: GenerationInfo, *, before: float, max_bytes: int = COMPACT_MAX_BYTES
) -> list[Path]:
    """DESTRUCTIVE (replaces files by one holding the same frames): merge runs of segments
    written before ``before`` that continue each other within one epoch into segments of up
    to ``max_bytes`` frames. Each run is read and checked first (a damaged one is left as it
    is, for a restore to report), the merged segment written atomically, and only then are
    the originals deleted; a crash in between leaves both, and a restore reads the merged
    one and skips what it covers. Returns the merged segments written."""
    segments, _ = list_segments(gen)
    runs: list[list[SegmentInfo]] = []
    run: list[SegmentInfo] = []
    size = 0
    for seg in segments:
        if seg.created_at >= before:
            break
        joins = (
            run
            and seg.epoch == run[-1].epoch
            and seg.prev == run[-1].end
            and seg.prev_checksum == run[-1].last_checksum
            and size + seg.raw_bytes <= max_bytes
        )
        if not joins:
            if len(run) > 1:
                runs.append(run)
            run, size = [], 0
        run.append(seg)
        size += seg.raw_bytes
    if len(run) > 1:
        runs.append(run)
    merged: list[Path] = []
    for group in runs:
        try:
            frames = [read_segment(seg.path)[1] for seg in group]
        except SegmentDamaged as err:
            log.warning("not compacting around %s: %s", err.path.name, err.reason)
            continue
        first, last = group[0], group[-1]
        info = write_segment(
            gen.segments_dir / segment_name(first.epoch, first.first, last.last),
            generation=gen.id,
            epoch=first.epoch,
            salt=bytes.fromhex(first.salt),
            page_size=first.page_size,
            first=first.first,
            frames=frames,
            prev=first.prev,
            prev_checksum=bytes.fromhex(first.prev_checksum),
            commits=_joined(seg.columns for seg in group),
            created_at=last.created_at,
            db_file=last.db_file,
        )
        for seg in group:
            with contextlib.suppress(FileNotFoundError):
                seg.path.unlink()
        fsync_dir(gen.segments_dir)
        merged.append(info.path)
    return merged


def _joined(parts: Iterable[CommitColumns]) -> CommitColumns:
    joined = CommitColumns()
    for part in parts:
        joined.extend(part)
    return joined


def plan_archive_prune(
    archive_root: Path, db_name: str, *, wall: float, retain_s: float
) -> policy.PrunePlan:
    """Read the archive of ``db_name`` and plan its pruning (read-only)."""
    views = []
    for gen in list_generations(archive_root, db_name):
        segments, _ = list_segments(gen)
        last = max((s.columns.t_hi_us[-1] / 1e6 for s in segments if s.columns), default=0.0)
        views.append(
            policy.GenerationView(
                id=gen.id,
                path=gen.path,
                last_at=max(last, gen.created_at),
                bases=[
                    policy.BaseView(b.path, b.record, b.usable_from, b.lo) for b in list_bases(gen)
                ],
                segments=[policy.SegmentView(s.path, s.end) for s in segments],
            )
        )
    return policy.plan_prune(views, wall=wall, retain_s=retain_s)


def apply_prune(plan: policy.PrunePlan) -> None:
    """DESTRUCTIVE: delete what ``plan`` names (bases with their manifest and record)."""
    touched: set[Path] = set()
    for base in plan.bases:
        for path in (base.record, base.path.with_name(base.path.name + ".json"), base.path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        touched.add(base.path.parent)
    for seg in plan.segments:
        with contextlib.suppress(FileNotFoundError):
            seg.unlink()
        touched.add(seg.parent)
    for gen_dir in plan.generations:
        # generation.json first: a prune killed half-way leaves a directory list_generations
        # skips, never a generation with holes in it.
        with contextlib.suppress(FileNotFoundError):
            (gen_dir / "generation.json").unlink()
        shutil.rmtree(gen_dir, ignore_errors=True)
        touched.add(gen_dir.parent)
    for directory in touched:
        with contextlib.suppress(OSError):
            fsync_dir(directory)
