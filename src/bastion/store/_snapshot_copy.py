"""Copying one snapshot of a live database into a new file.

:mod:`bastion.store.backup` decides *what* a backup is (names, manifests, rotation, restore);
this module does the copying. A separate read-only connection opens a read transaction, so
the copy is of *one snapshot* while writers keep committing into the WAL. When a checkpoint
has put every page of that snapshot into the database file (the usual case, see
:func:`_pin_snapshot`), the file's pages are copied in large chunks and hashed on the way
("file", ``_snapshot_file_copy.py``); otherwise the SQLite backup API copies the snapshot page
by page ("backup-api"). The parts it is made of, each a module of its own:
``_snapshot_facts.py`` (:func:`inspect_file`, what verification reads from a copy:
``quick_check``, page count, schema fingerprint and row counts; :func:`read_source_state`),
``_snapshot_hash.py`` (the hashing threads) and ``_snapshot_file_copy.py``; their public names
are importable from here as before.

This module never opens (and so never closes) the live database file or its ``-shm``: closing
any descriptor of a file drops every POSIX lock the process holds on it, SQLite's included.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import apsw

from bastion import _platform
from bastion.errors import BackupError, StoreError, StoreIOError
from bastion.store._errors import translate
from bastion.store._filenames import sqlite_path
from bastion.store._snapshot_facts import (
    FileFacts,
    SourceState,
    _int,
    inspect_file,
    read_source_state,
    row_counts,
    schema_fingerprint,
)
from bastion.store._snapshot_file_copy import copy_file
from bastion.store._snapshot_hash import FollowingSha256, Sha256Thread
from bastion.store.crypt.cipher import FileKind, classify, connect
from bastion.store.crypt.key import DatabaseKey

if TYPE_CHECKING:
    from bastion.store.engine import Database

__all__ = [
    "FileFacts",
    "FollowingSha256",
    "ProgressCallback",
    "Sha256Thread",
    "SourceState",
    "inspect_file",
    "read_source_state",
    "row_counts",
    "schema_fingerprint",
    "take_copy",
    "unlink_quietly",
]

log = logging.getLogger("bastion.store.backup")

#: ``fn(copied_pages, total_pages)``, called after every step.
ProgressCallback = Callable[[int, int], None]


#: How often a backup asks for a checkpoint and a fresh snapshot before it settles for the
#: backup API (see :func:`_pin_snapshot`).
_PIN_ATTEMPTS = 2


@dataclasses.dataclass(frozen=True, slots=True)
class _Copy:
    """A durable copy of one snapshot in the temp file, not yet verified."""

    method: str  # "file" | "backup-api" | "vacuum" (see take_copy)
    source_fp: str
    source_pages: int
    state: SourceState
    hash: FollowingSha256 | None  # running behind the file copy; None: hash the file after


def take_copy(
    db: Database,
    tmp: Path,
    *,
    vacuum: bool,
    step_pages: int,
    progress: ProgressCallback | None,
    vfs: str | None,
) -> _Copy:
    """Pin a snapshot of ``db`` and copy it into ``tmp`` (fsynced); nothing is left on failure.

    Three methods, best first:
    - "file" (where positional I/O exists: ``bastion._platform.FILE_COPY``; POSIX systems):
      the database file alone holds the snapshot and nothing writes to it until the
      read transaction ends (see :func:`_pin_snapshot`), so its first ``page_count`` pages are
      copied in large chunks, hashed on the way; only bytes 18-19 of page 1 change (WAL ->
      rollback journal, what ``PRAGMA journal_mode=delete`` writes there).
    - "backup-api": when some frames of the snapshot are only in the WAL (another reader pins
      it, another process committed meanwhile), or where positional I/O is missing (Windows,
      or forced with ``BASTION_PORTABLE=1``): SQLite's backup API copies page by page. It
      needs nothing of the OS but what SQLite itself uses: the portable path.
    - "vacuum": ``VACUUM INTO``, a compacted copy.
    """
    key: DatabaseKey | None = getattr(db, "_key", None)
    src = _open_source(db.path, vfs, key)
    hasher: FollowingSha256 | None = None
    try:
        try:
            if vacuum:
                state = read_source_state(db.path)
                src.execute("BEGIN")
                src.execute("SELECT count(*) FROM sqlite_schema").fetchall()
                whole_file = False
            else:
                whole_file = _pin_snapshot(db, src)
                state = read_source_state(db.path)
            source_fp = schema_fingerprint(src)
            source_pages = int(src.pragma("page_count"))
            page_size = int(src.pragma("page_size"))
            if vacuum:
                # VACUUM INTO reads its own snapshot and refuses to run inside a transaction.
                src.execute("COMMIT")
                method = "vacuum"
            elif whole_file and source_pages > 0 and _platform.FILE_COPY:
                # Chosen by capability (positional I/O on SQLite's own descriptor), not by
                # the system's name: without it (Windows, BASTION_PORTABLE) the backup API.
                method = "file"
                hasher = copy_file(
                    src,
                    db.path,
                    tmp,
                    pages=source_pages,
                    page_size=page_size,
                    step_pages=step_pages,
                    progress=progress,
                    vfs=vfs,
                    key=key,
                )
            else:
                method = "backup-api"
            if method != "file":
                # VACUUM INTO or the backup API: SQLite writes the copy, keyed as the source.
                _copy(
                    src,
                    tmp,
                    vacuum=vacuum,
                    step_pages=step_pages,
                    progress=progress,
                    vfs=vfs,
                    key=_same_salt(key, db.path),
                )
        except apsw.Error as err:
            unlink_quietly(tmp)
            raise _backup_error(err, db.path) from err
        except OSError as err:
            unlink_quietly(tmp)
            raise _os_error(err, tmp) from err
        except BaseException:
            unlink_quietly(tmp)
            raise
        finally:
            if src.in_transaction:
                src.execute("COMMIT")
    except BaseException:
        if hasher is not None:  # the copy is done, its hash still waits for the end: stop it
            hasher.abandon()
        raise
    finally:
        src.close()
    return _Copy(method, source_fp, source_pages, state, hasher)


def _pin_snapshot(db: Database, src: apsw.Connection) -> bool:
    """Open ``src``'s read transaction (the snapshot the backup copies). True when the database
    file by itself holds that snapshot and nothing writes to the file before the transaction
    ends, so that copying its first ``page_count`` pages copies the snapshot exactly.

    On the writer connection, with no transaction of this process able to commit meanwhile:
    read ``PRAGMA data_version``, run a PASSIVE checkpoint, begin ``src``'s read transaction,
    read ``data_version`` again. The checkpoint reports the WAL's last frame and how many
    frames are in the database file now; equal means every committed page is in the file. An
    unchanged ``data_version`` means no connection anywhere committed between the checkpoint
    and ``src``'s snapshot (SQLite bumps it whenever the WAL header it last saw changed, and
    every commit and WAL restart changes it; a checkpoint that sees a newer header forgets
    the old one, so that case reads as changed too). Then the snapshot is the file, and it
    stays so: SQLite only writes the database file in a checkpoint, and a checkpoint never
    copies frames past the snapshot of a reader that still holds its read lock (wal.c,
    ``walCheckpoint``: ``mxSafeFrame``), and here there are no frames up to the snapshot
    left to copy. Anything else (busy checkpoint, a reader pinning older frames, a commit in
    between, not WAL mode) returns False: the caller copies with the backup API instead.

    The WAL index (``-shm``) is never opened here: closing any descriptor of a file drops
    every POSIX lock this process holds on it, SQLite's included.
    """

    def pin(writer: apsw.Connection | None) -> bool:
        complete = False
        before = after = None
        if writer is not None:
            try:
                before = writer.pragma("data_version")
                row = writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
                busy, log, done = (_int(v) for v in row)
                complete = busy == 0 and log >= 0 and log == done
            except apsw.Error:
                complete = False  # the fast path is an optimisation; the backup API remains
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_schema").fetchall()
        if writer is not None and complete:
            try:
                after = writer.pragma("data_version")
            except apsw.Error:
                return False
        return complete and before is not None and before == after

    for attempt in range(_PIN_ATTEMPTS):
        try:
            whole_file = db.run_outside_transaction(lambda tx: pin(tx._conn))
        except RuntimeError:
            # Called from inside a write unit of this database: no checkpoint, backup API.
            whole_file = pin(None)
        if whole_file or attempt == _PIN_ATTEMPTS - 1:
            return bool(whole_file) and str(src.pragma("journal_mode")).lower() == "wal"
        src.execute("COMMIT")
    return False  # pragma: no cover - the loop always returns


def _os_error(err: OSError, tmp: Path) -> StoreIOError:
    full = err.errno in {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
    what = "disk full" if full else "I/O error"
    # The folder named too: the temporary file's name alone (".b.db.tmp") does not say
    # which disk is full.
    return StoreIOError(
        f"{what} writing backup {tmp.name} in {tmp.parent}: {err.strerror or err}",
        hint=(
            f"Free space in {tmp.parent} (or back up to another disk), then back up again. "
            "Nothing was moved or lost."
            if full
            else None
        ),
        path=str(tmp.parent),
    )


def _same_salt(key: DatabaseKey | None, path: Path) -> DatabaseKey | None:
    """``key`` giving a new file the salt of the file at ``path`` (so a passphrase-derived key
    opens the copy as it opens the original)."""
    if key is None:
        return None
    from bastion.store._rawread import read_head

    head = read_head(path, 24)
    return key.with_salt(head[:16] if classify(head) is FileKind.ENCRYPTED else None)


def _open_source(path: Path, vfs: str | None, key: DatabaseKey | None = None) -> apsw.Connection:
    try:
        conn = connect(str(path), flags=apsw.SQLITE_OPEN_READONLY, vfs=vfs, key=key)
        conn.setbusytimeout(5000)
    except apsw.Error as err:
        raise translate(err, path=str(path), what="opening the backup source") from err
    return conn


def _copy(
    src: apsw.Connection,
    tmp: Path,
    *,
    vacuum: bool,
    step_pages: int,
    progress: ProgressCallback | None,
    vfs: str | None,
    key: DatabaseKey | None = None,
) -> None:
    # ``key`` (with the source's salt): an encrypted source's copy gets the same key. VACUUM
    # INTO gives it one by itself; the backup API copies pages only between databases with the
    # same cipher settings, so the destination is keyed before it starts.
    unlink_quietly(tmp)
    total = _int(src.execute("PRAGMA page_count").fetchall()[0][0])
    if vacuum:
        if progress:
            progress(0, total)
        src.execute("VACUUM INTO ?", (sqlite_path(tmp),)).fetchall()
        os.chmod(tmp, 0o600)
        dest = connect(str(tmp), vfs=vfs, key=key)
        try:
            dest.pragma("journal_mode", "delete")
        finally:
            dest.close()
        if progress:
            progress(total, total)
        return
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    dest = connect(str(tmp), vfs=vfs, key=key)
    try:
        # No journal and no syncs while copying into the private temp file (a crash leaves a
        # temp file that is never used); the journal-mode switch below commits with
        # synchronous=FULL, and that fsync makes the whole file durable.
        dest.pragma("journal_mode", "off")
        dest.pragma("synchronous", "off")
        with dest.backup("main", src, "main") as job:
            while not job.done:
                job.step(step_pages)
                if progress:
                    progress(job.page_count - job.remaining, job.page_count)
        dest.pragma("synchronous", "full")
        # A backup is one self-contained file: no WAL next to it to lose or mismatch.
        dest.pragma("journal_mode", "delete")
    except (apsw.FullError, apsw.IOError) as err:
        # Writing the copy failed (the source is only read). The backup object reports it
        # on the source connection ("not an error"): name the file and the OS's reason,
        # as the file copy does for the same refusal.
        from bastion.store._diagnose import io_error

        code = dest.system_errno
        if isinstance(err, apsw.FullError):  # SQLITE_FULL: no space (or quota) for the copy
            raise io_error(tmp, err_no=code or None, what="writing a backup", full=True) from err
        code = code or errno.EIO
        raise _os_error(OSError(code, os.strerror(code)), tmp) from err
    finally:
        dest.close()


def _backup_error(err: apsw.Error, path: Path) -> StoreError:
    mapped = translate(err, path=str(path), what="backing up")
    if isinstance(mapped, StoreIOError):
        return mapped
    return BackupError(f"backup of {path} failed: {mapped.message}", recoverable=True)


def unlink_quietly(path: Path) -> None:
    # Any OSError: on a read-only or failing disk the unlink fails too, and must not replace
    # the error being raised (a traceback from `db backup --to` on read-only media).
    for p in (path, Path(str(path) + "-journal"), Path(str(path) + "-wal")):
        with contextlib.suppress(OSError):
            p.unlink()
