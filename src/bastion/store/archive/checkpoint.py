"""The checkpoints the archiver runs (SQLite's autocheckpoint is handed over to it).

PASSIVE ones copy archived frames into the database file (never past the archiver's read
transaction R: nothing unarchived is checkpointed); the TRUNCATE of a clean stop or of the
WAL watchdog empties the WAL exactly at the archived end, R still held.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw

from bastion.store.archive.walfile import IndexHeader, IndexReader
from bastion.store.archive.writelock import poll_until

if TYPE_CHECKING:
    from bastion.store.engine import Database

__all__ = ["TRUNCATE_WAIT_MS", "copied_all", "passive", "truncate_at_end"]

log = logging.getLogger("bastion.store.archive")

#: How long the archive's own TRUNCATE waits for the locks it needs (as bastion's WAL
#: watchdog does: briefly; the frames are archived either way).
TRUNCATE_WAIT_MS = 1000

#: ``fn(mode)``: one checkpoint of that mode ran (GET /metrics' checkpoint count).
Counted = Callable[[str], None]


def copied_all(checkpoint: tuple[int, int, int] | None) -> bool:
    """Whether a checkpoint's (busy, log, checkpointed) says every frame is in the database."""
    return checkpoint is not None and checkpoint[1] == checkpoint[2]


def passive(
    conn: apsw.Connection, db_path: Path, counted: Counted, *, quiet: bool = False
) -> tuple[int, int, int] | None:
    """``wal_checkpoint(PASSIVE)`` on ``conn``: (busy, log, checkpointed), or None when it
    failed (logged unless ``quiet``)."""
    try:
        row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        counted("PASSIVE")
        busy, log_frames, done = (int(str(v)) for v in row[0])
    except apsw.Error as err:
        if not quiet:
            log.warning("checkpoint of %s failed: %s", db_path, err)
        return None
    return (busy, log_frames, done)


def truncate_at_end(
    writer: apsw.Connection,
    header: IndexHeader,
    *,
    checkpoint: tuple[int, int, int] | None,
    version: Any,
    db: Database,
    index: IndexReader,
    counted: Counted,
) -> dict[str, int] | None:
    """TRUNCATE on the writer with R still held, then check that no other connection
    committed since the locked read of ``header`` (``data_version`` moves only for others'
    commits: it was ``version`` then), and under the write lock that the WAL is empty and
    restarted once. Returns the database file's identity then (None: not emptied so).

    R is never released for it: between the locked phase and the TRUNCATE (which takes
    the write lock itself) another process may commit, and without R a TRUNCATE would
    copy those frames into the database and drop them from the WAL unarchived. R gets
    read mark 0 when the locked ``checkpoint`` copied everything; with it held a TRUNCATE
    still restarts the WAL -- restarting waits only for read marks 1..N -- while no frame
    past the archived end can be checkpointed, so the WAL can restart only exactly there.
    Anything else (frames past R, a reader elsewhere) and the TRUNCATE is not tried: it
    could only succeed by giving up R."""
    if not copied_all(checkpoint):
        return None
    now = index.read()
    if now is None or now.salt != header.salt or now.mx_frame != header.mx_frame:
        return None  # committed since the locked phase: R protects those frames
    try:
        writer.setbusyhandler(poll_until(time.monotonic() + TRUNCATE_WAIT_MS / 1000))
        try:
            row = writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()[0]
            counted("TRUNCATE")
        finally:
            writer.setbusytimeout(db.config.busy_timeout_ms)
        if int(str(row[0])) or writer.pragma("data_version") != version:
            return None
        writer.execute("BEGIN IMMEDIATE")
        try:
            after = index.read()
            salt1 = (int.from_bytes(header.salt[:4], "big") + 1) & 0xFFFFFFFF
            if after is None or after.mx_frame or after.salt[:4] != salt1.to_bytes(4, "big"):
                return None
            st = os.stat(db.path)
        finally:
            writer.execute("COMMIT")
    except (apsw.Error, OSError):
        return None
    return {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
