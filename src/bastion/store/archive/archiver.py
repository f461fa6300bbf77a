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

**Commit times** come from SQLite's WAL hook (this process's commits, exact) and the
archiver's looks at the wal-index every 0.1 s (another's): :mod:`.timing`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw

from bastion import _platform
from bastion._fs import ensure_private_dir
from bastion._lockfile import LockFile
from bastion._platform.filewatch import BlockingWatch, blocking_watch
from bastion.errors import ArchiveError, BastionError, StoreBusy, StoreError
from bastion.store._errors import translate
from bastion.store.archive import owner, policy
from bastion.store.archive.batch import (
    PENDING_BYTES,
    PENDING_MAX_BYTES,
    Batch,
    Pending,
    check_frames,
    write_pending,
)
from bastion.store.archive.checkpoint import (
    TRUNCATE_WAIT_MS,
    copied_all,
    passive,
    truncate_at_end,
)
from bastion.store.archive.compact import COMPACT_AFTER_S, compact_segments
from bastion.store.archive.layout import (
    GenerationInfo,
    list_bases,
    list_generations,
    list_segments,
    new_generation_id,
    write_base_record,
    write_generation,
)
from bastion.store.archive.prune import apply_prune, plan_archive_prune
from bastion.store.archive.resume import (
    continuation,
    db_file_identity,
    restarted_once,
    resume_point_matches,
    write_resume_point,
)
from bastion.store.archive.segment import CommitColumns
from bastion.store.archive.timing import commit_times
from bastion.store.archive.walfile import (
    FRAME_HEADER_BYTES,
    NO_POSITIONAL_IO,
    IndexHeader,
    IndexReader,
    WalFile,
    set_persist_wal,
)
from bastion.store.archive.writelock import LOCK_POLL_S, under_write_lock
from bastion.store.dialect import require_sqlite

if TYPE_CHECKING:
    from bastion.config import ArchiveConfig
    from bastion.store.engine import Database, WriteTx

__all__ = ["ArchiveStatus", "Archiver"]

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


#: How long a pass of the thread waits for the write lock before it gives way (the position
#: and R are kept, and the next pass retries). Another process's RESTART/TRUNCATE checkpoint
#: holds that lock while it waits for R, which it cannot get while frames behind R are not
#: archived: the archiver, not R, is the side that yields, and it yields fast.
_PASS_LOCK_WAIT_MS = 500


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
        self._grace_until = 0.0  # (clock) looks every POLL_S until then: see _sleep
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
        self._pending: Pending | None = None
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
        #: The archiver lock of the database, held from start to stop (owner.py).
        self._owner: LockFile | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> Archiver:
        """Open the archiver's connections, take over checkpoints, start the thread."""
        if self._thread is not None:
            raise RuntimeError(f"the archiver of {self.db.path} is running already")
        if _platform.pread is None or not _platform.FD_DIRS:
            # The wal-index is read through SQLite's own descriptor, found by listing ours.
            raise ArchiveError(NO_POSITIONAL_IO, hint="Leave [archive] off on this system")
        # Before anything is written, checkpointed or pruned: all of it assumes no other
        # archiver of this database is at work (owner.py).
        self._owner = owner.take(self.db.path)
        try:
            ensure_private_dir(self.archive_root / self.db.name)
        except OSError as err:
            self._release_owner()
            raise ArchiveError(
                f"cannot use {self.archive_root} for the archive: {err.strerror or err}",
                path=str(self.archive_root),
            ) from err
        # Before the first look: a commit after it is an event the thread is woken by.
        path = self.db.path
        try:
            self._watch = blocking_watch(
                path.parent, [path.name, f"{path.name}-wal", f"{path.name}-shm"], opens=True
            )
            self._reader = self._side_connection()
            self._checkpointer = self._side_connection()
            self._resume()
        except BaseException:
            self._give_back()
            raise

        def take_over(_tx: WriteTx) -> None:
            writer = self.db._driver_connection()
            set_persist_wal(writer)
            writer.set_wal_hook(self._on_commit)  # replaces SQLite's autocheckpoint hook
            self.db._wal_owner = self

        try:
            # As a unit of the writer's: the daemon starts its archiver after its handshake,
            # when requests may be writing, and the writer connection is used by one thread
            # at a time (apsw refuses two).
            self.db.run_outside_transaction(take_over)
        except BaseException:
            self._give_back()
            raise
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

            def give_back(_tx: WriteTx) -> None:
                writer = self.db._driver_connection()
                writer.set_wal_hook(None)
                writer.wal_autocheckpoint(1000)  # SQLite's default hook, back in place

            # A writer's unit, as the take-over in start(): requests may be writing.
            with contextlib.suppress(apsw.Error, BastionError):
                self.db.run_outside_transaction(give_back)
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
        self._release_owner()

    def _release_owner(self) -> None:
        owner, self._owner = self._owner, None
        if owner is not None:
            owner.release()

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
            and self._clock() >= self._grace_until
            and self._nothing_new(header)
            and self._index.attached_elsewhere() is False
        ):
            timer = policy.next_timer_s(
                self._schedule,
                now=self._clock(),
                wall=self._wall(),
                snapshot_interval_s=self.config.snapshot_interval_s,
            )
            if not self._wake.is_set() and watch.wait(min(timer, self._watched_look_s)):
                # Woken by an event: it may be a process attaching, whose lock on the -shm
                # follows its opens (policy.ATTACH_GRACE_S); look every POLL_S until then.
                self._grace_until = self._clock() + policy.ATTACH_GRACE_S
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

    def _pass(self, *, checkpoint: bool, wait_ms: int | None = None) -> Batch | None:
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

    def _pass_locked(self, *, checkpoint: bool, wait_ms: int | None = None) -> Batch:
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
        fn: Callable[[WriteTx], Batch],
        wait_ms: int | None,
        *,
        then: Callable[[apsw.Connection, Batch], None] | None = None,
    ) -> Batch:
        """``fn`` under the write lock (:func:`.writelock.under_write_lock`).

        Which failure leaves R where: not getting the lock, or ``fn`` failing before it moves
        R (see :meth:`_locked`), leaves R at the archived position and ``_protected`` as it
        was -- contention never ends a generation. Once R has moved, the batch read is what
        R's move is safe for; a failure to commit loses it, so R no longer proves anything."""
        return under_write_lock(
            self.db, fn, wait_ms, then=then, on_commit_failed=self._commit_failed
        )

    def _commit_failed(self) -> None:
        self._protected = False

    def _keep(self, batch: Batch) -> None:
        """After the locked phase: the batch into the archive (or the pending segment).

        A segment that cannot be written (full disk) stays pending in memory and is written
        by a later pass: the frames are held, so the history goes on. Only a failure that
        loses a batch ends the generation (R has moved past frames nothing holds), or
        pending frames grown past ``PENDING_MAX_BYTES``."""
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
            if pending is not None and pending.nbytes > PENDING_MAX_BYTES:
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
        passive(self._checkpointer, self.db.path, self._counted, quiet=True)

    def _locked(self, tx: WriteTx, checkpoint: bool) -> Batch:
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
        batch = Batch(header, self._wall())
        batch.hooks, self._hooks = self._hooks, []
        batch.new_generation, batch.new_epoch = continuation(
            header,
            generation=self._gen is not None,
            position=(self._epoch, self._pos, self._salt),
            page_size=self._page_size,
            protected=self._protected,
            frame_at_pos_ok=self._frame_at_pos_ok,
            resumable=self._resumable,
            restarted_once=lambda: self._restarted_once(header),
        )
        if batch.new_generation is None:
            batch.first = 1 if batch.new_epoch else self._pos + 1
            batch.last = header.mx_frame
            if batch.last >= batch.first:
                batch.frames = self._wal.frames(batch.first, batch.last, header.page_size)
                check_frames(batch, self.db.path)
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
        return passive(self._checkpointer, self.db.path, self._counted)

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
            if self._gen is not None:
                # Nothing was committed between the last archived commit and _last_read_at.
                write_resume_point(
                    self._gen,
                    point,
                    position=(self._epoch, self._pos, self._salt),
                    at=self._last_read_at,
                )

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

        def locked(tx: WriteTx) -> Batch:
            nonlocal version
            batch = self._locked(tx, True)
            # A reader of an older snapshot (a backup, a reader of the pool) keeps the
            # checkpoint from copying everything, and R from read mark 0: try again for a
            # moment, as a TRUNCATE waits for readers. Ending and taking R again is safe
            # here: the write lock is held, and everything up to the end is in the batch.
            deadline = time.monotonic() + TRUNCATE_WAIT_MS / 1000
            while not copied_all(batch.checkpoint) and time.monotonic() < deadline:
                time.sleep(LOCK_POLL_S * 5)
                self._protected = False
                self._end_read()
                batch.checkpoint = self._locked_checkpoint()
                self._begin_read()
            version = tx._conn.pragma("data_version")
            return batch

        def truncate(writer: apsw.Connection, batch: Batch) -> None:
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
        self, writer: apsw.Connection, batch: Batch, version: Any
    ) -> dict[str, int] | None:
        """TRUNCATE on the writer with R still held (:func:`.checkpoint.truncate_at_end`):
        only while R protects the archived end, which is where the WAL may restart."""
        if not self._protected:
            return None
        return truncate_at_end(
            writer,
            batch.header,
            checkpoint=batch.checkpoint,
            version=version,
            db=self.db,
            index=self._index,
            counted=self._counted,
        )

    def _db_file(self) -> tuple[int, int, int, int] | None:
        return db_file_identity(self.db.path)

    def _restarted_once(self, header: IndexHeader) -> bool:
        """After a crash (R gone): :func:`.resume.restarted_once`."""
        return restarted_once(self._tip_db_file, self._salt, header, self.db.path)

    def _resumable(self) -> bool:
        """Whether the generation's resume point matches the archived position and the
        database file is untouched since (:func:`.resume.resume_point_matches`). Read with
        the write lock held, so no checkpoint of this epoch's frames can be writing the file
        meanwhile... except a PASSIVE one of another process, which changes the time and so
        says no."""
        return self._gen is not None and resume_point_matches(
            self._gen, (self._epoch, self._pos, self._salt), self.db.path
        )

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

    def _store(self, batch: Batch) -> None:
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
            pending = self._pending = Pending(
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
        if not force and young and pending.nbytes < PENDING_BYTES:
            return
        info = write_pending(
            self._gen, pending, salt=self._salt, page_size=self._page_size, db_file=self._db_file()
        )
        self._pending = None  # only once written: a failed write is retried by a later pass
        self._tip_db_file = info.db_file
        self._segments += 1

    def _commit_times(self, batch: Batch) -> CommitColumns:
        """Each commit frame of the batch with its time (:func:`.timing.commit_times`); the
        looks it used are let go but the last."""
        columns = commit_times(
            batch.frames,
            first=batch.first,
            last=batch.last,
            page_size=self._page_size,
            salt=batch.header.salt,
            hooks=batch.hooks,
            looks=self._looks,
            floor=self._last_read_at,
            read_at=batch.read_at,
        )
        if self._looks:
            self._looks = self._looks[-1:]
        return columns

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

    def _start_generation(self, batch: Batch) -> None:
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
