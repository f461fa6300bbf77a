"""WAL size control: SQLite's autocheckpoint plus a watchdog for the cases it cannot handle.

``wal_autocheckpoint`` only runs PASSIVE checkpoints, which never wait for readers; a reader
that stays open (a long export, a leaked cursor) pins the WAL and it grows without bound. The
watchdog notices a WAL past the cap, runs ``wal_checkpoint(RESTART)`` and then ``TRUNCATE``
once readers have moved on, with a short busy timeout so the writer is never stalled for
long, and logs which of this process's readers held the WAL back.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import apsw

from bastion.store.dialect import require_sqlite
from bastion.store.engine import WriteTx

if TYPE_CHECKING:
    from bastion.store.engine import Database

__all__ = ["CheckpointResult", "WalWatchdog", "checkpoint"]

log = logging.getLogger("bastion.store.wal")

#: How long a watchdog checkpoint may wait for readers, per attempt: short, because the
#: writer thread is held meanwhile. The next tick tries again.
_CHECKPOINT_WAIT_MS = 100


@dataclasses.dataclass(frozen=True, slots=True)
class CheckpointResult:
    """One ``wal_checkpoint``: its mode, whether a reader kept it busy, and frames."""

    mode: str
    busy: bool
    wal_frames: int
    checkpointed_frames: int


def checkpoint(
    db: Database, mode: str = "PASSIVE", *, wait_ms: int | None = None
) -> CheckpointResult:
    """Run ``PRAGMA wal_checkpoint(mode)`` on the writer connection, outside any transaction."""
    require_sqlite(db, "checkpoints")
    if mode not in {"PASSIVE", "FULL", "RESTART", "TRUNCATE"}:
        raise ValueError(
            f"checkpoint mode must be PASSIVE, FULL, RESTART or TRUNCATE, not {mode!r}"
        )

    owner = db._wal_owner
    if owner is not None and mode in {"RESTART", "TRUNCATE"}:
        # An archiver holds a read transaction these modes would wait on (and must not let
        # them drop frames it has not copied): it archives, then truncates, itself.
        emptied = bool(owner.truncate_wal())
        return CheckpointResult(mode, not emptied, 0, 0)

    def run(tx: WriteTx) -> CheckpointResult:
        conn: apsw.Connection = tx._conn
        if wait_ms is not None:
            conn.setbusytimeout(wait_ms)
        try:
            busy, frames, done = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()[0]
        finally:
            if wait_ms is not None:
                conn.setbusytimeout(db.config.busy_timeout_ms)
        return CheckpointResult(mode, bool(busy), int(frames or 0), int(done or 0))

    result = db.run_outside_transaction(run)
    if db.tally is not None:
        db.tally.checkpointed(mode)
    return result


class WalWatchdog:
    """Background thread: when the ``-wal`` file passes ``config.wal_cap_bytes``, shrink it."""

    def __init__(self, db: Database) -> None:
        require_sqlite(db, "the WAL watchdog")
        self._db = db
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"bastion-wal:{db.name}", daemon=True
        )
        self.truncations = 0
        self.last_holder: str | None = None

    def start(self) -> None:
        """Start watching the WAL's size in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the watchdog and wait for its thread."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    def _loop(self) -> None:
        interval = self._db.config.wal_watchdog_interval_s
        wal = Path(str(self._db.path) + "-wal")
        # A timer that stays (issue 22 §7): it bounds how long a WAL past its cap goes
        # unnoticed (wal_watchdog_interval_s), and a look that failed to shrink it must come
        # back without a write to wake it. One stat every 5 s is below what bench/idle.py can
        # measure; waking on the -wal's writes instead would take an inotify instance per
        # open database, out of a per-user limit (128 by default) that the services folder
        # and vault.db watches need.
        while not self._stop.wait(interval):
            try:
                size = wal.stat().st_size
            except FileNotFoundError:
                continue
            if size <= self._db.config.wal_cap_bytes:
                continue
            try:
                self.shrink()
            except Exception:  # the watchdog must outlive any one failure
                if self._db.closed:
                    return
                log.exception("WAL watchdog could not checkpoint %s", self._db.path)

    def shrink(self) -> bool:
        """RESTART then TRUNCATE; return True when the WAL was reset to zero bytes.

        While an archiver owns the WAL (``store.archive``), it is asked instead: it copies
        the frames first and then checkpoints, so nothing leaves the WAL unarchived."""
        owner = self._db._wal_owner
        if owner is not None:
            if owner.truncate_wal():
                self.truncations += 1
                return True
            self._report_holder(CheckpointResult("TRUNCATE", True, 0, 0))
            return False
        restart = checkpoint(self._db, "RESTART", wait_ms=_CHECKPOINT_WAIT_MS)
        if restart.busy or restart.checkpointed_frames < restart.wal_frames:
            self._report_holder(restart)
            return False
        truncate = checkpoint(self._db, "TRUNCATE", wait_ms=_CHECKPOINT_WAIT_MS)
        if truncate.busy:
            self._report_holder(truncate)
            return False
        self.truncations += 1
        log.info(
            "WAL of %s truncated after passing %d bytes",
            self._db.path,
            self._db.config.wal_cap_bytes,
        )
        return True

    def _report_holder(self, result: CheckpointResult) -> None:
        holders = self._db.reader_holders()
        now = time.monotonic()
        if holders:
            self.last_holder = ", ".join(
                f"{name} (for {now - since:.1f}s)" for name, since in holders
            )
        else:
            self.last_holder = "a reader in another process"
        log.warning(
            "WAL of %s is past its cap and could not be checkpointed (%d of %d frames): held by %s",
            self._db.path,
            result.checkpointed_frames,
            result.wal_frames,
            self.last_holder,
        )
