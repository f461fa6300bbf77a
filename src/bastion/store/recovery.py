"""Corruption: detect at open, quarantine, restore the newest good backup, salvage, merge back.

:func:`open_check` is cheap and read-only: it looks at the files first (missing, emptied,
not SQLite, shorter than the header says, a WAL that vanished while committed frames were
recorded in the wal-index) and then runs ``quick_check`` if the file is under the configured
size, interrupted at the configured time (an interrupted check is *inconclusive*, not a
failure: a large healthy database must still open).

:func:`recover` is what ``on_corrupt = "recover"`` and ``bastion db recover`` run. It is
DESTRUCTIVE in one way only: the live files move. Everything else is additive:

1. ``db``, ``-wal``, ``-shm`` move *together* into ``quarantine/<utc>/`` (the WAL holds
   committed transactions; it is never deleted and never left beside another file);
2. the newest backup that passes deep verification is copied into place (none: the salvaged
   copy goes into place instead, or nothing and the app starts empty);
3. the quarantined copy is salvaged into ``quarantine/<utc>/salvaged.db``;
4. ``quarantine/<utc>/report.json`` says what failed, which backup was restored, rows per
   table in the backup vs salvaged, and how many salvaged rows the backup lacks.

:func:`merge_salvage` (``bastion db recover --from-salvage``) then copies rows that are in
the salvaged copy but not in the live database, table by table, and reports conflicts
(same rowid, different content; or a unique key taken) instead of overwriting anything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import errno
import json
import os
import struct
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw

from bastion._fs import atomic_write, copy_private, ensure_private_dir
from bastion.errors import IndexCorrupt, NotADatabase, StoreCorrupt, StoreError, StoreMissing
from bastion.store._diagnose import io_error, write_blocker
from bastion.store._errors import is_fts5_damage, translate
from bastion.store._filenames import sqlite_uri_path
from bastion.store._rawread import read_head
from bastion.store._readonly import readonly_target
from bastion.store._swap import preflight, remove_quietly, replacement_path, swap_in
from bastion.store.backup import (
    BackupInfo,
    EventSink,
    list_backups,
    newest_verified_backup,
    utc_stamp,
)
from bastion.store.crypt.cipher import FileKind, classify, connect
from bastion.store.crypt.key import DatabaseKey
from bastion.store.crypt.refusal import key_refusal, missing_key, not_encrypted
from bastion.store.header import short_without_wal

if TYPE_CHECKING:
    from bastion.config import StoreConfig
    from bastion.store.engine import Database
    from bastion.store.salvage import SalvageResult

__all__ = [
    "CheckKind",
    "MergeReport",
    "OpenCheck",
    "RecoveryReport",
    "latest_salvage",
    "merge_salvage",
    "open_check",
    "recover",
]

_HEADER = b"SQLite format 3\x00"


class CheckKind(enum.Enum):
    """Outcome of :func:`open_check`. Only ``OK``/``NEW``/``INCONCLUSIVE`` let an open go on;
    only the :attr:`damaged` kinds are evidence of damage (what recovery may act on).
    ``IO_ERROR`` is neither: the disk refused (full, read-only, permissions, a device
    error) and the check could not run even read-only; nothing is known about the data.
    ``KEY`` is neither either: the file and the key given do not go together (see
    :mod:`bastion.store.crypt`); the operator's to fix, never recovery's."""

    OK = "ok"
    NEW = "new"  # no file yet and no sign one existed: a fresh database
    INCONCLUSIVE = "inconclusive"  # quick_check skipped (size), interrupted (time) or locked
    IO_ERROR = "io_error"  # the disk refused the check: an I/O condition, never corruption
    KEY = "key"  # an encrypted file without its key, a wrong key, a plaintext file given a key
    MISSING = "missing"
    EMPTY = "empty"
    NOT_A_DATABASE = "not_a_database"
    TRUNCATED = "truncated"
    WAL_LOST = "wal_lost"
    CORRUPT = "corrupt"

    @property
    def healthy(self) -> bool:
        """Whether a check of this kind lets the database open (ok, new, inconclusive)."""
        return self in (CheckKind.OK, CheckKind.NEW, CheckKind.INCONCLUSIVE)

    @property
    def damaged(self) -> bool:
        """Evidence of damage: a bad or missing file, or rows from quick_check."""
        return not self.healthy and self not in (CheckKind.IO_ERROR, CheckKind.KEY)


@dataclasses.dataclass(frozen=True, slots=True)
class OpenCheck:
    """The open-time check of a file: its kind (ok, corrupt, ...), detail and duration."""

    path: Path
    kind: CheckKind
    detail: str
    output: tuple[str, ...]
    duration_s: float
    #: Why the disk refused a normal open (full, read-only, permissions), when it did: the
    #: check then ran read-only (``kind`` is its result) or could not run (``IO_ERROR``).
    fault: StoreError | None = None

    @property
    def ok(self) -> bool:
        """Whether the database may be opened."""
        return self.kind.healthy

    @property
    def damaged(self) -> bool:
        """Whether the check found evidence of damage (never for an I/O condition)."""
        return self.kind.damaged

    @property
    def index_only(self) -> bool:
        """Whether everything the check found is FTS5 reporting its own indexes damaged: the
        tables are sound as far as the check reads, and rebuilding those indexes from them
        (``bastion db reindex``) mends it without a restore."""
        from bastion.store.fts import is_fts5_finding

        return (
            self.kind is CheckKind.CORRUPT
            and bool(self.output)
            and all(is_fts5_finding(row) for row in self.output)
        )

    def to_dict(self) -> dict[str, Any]:
        """The check as JSON-ready data."""
        return {
            "path": str(self.path),
            "kind": self.kind.value,
            "ok": self.ok,
            "damaged": self.damaged,
            "index_only": self.index_only,
            "detail": self.detail,
            "output": list(self.output),
            "duration_s": round(self.duration_s, 3),
            "fault": self.fault.to_dict() if self.fault is not None else None,
        }

    def error(self) -> StoreError:
        """The typed error for a check that did not pass: the I/O condition for
        ``IO_ERROR`` (``StoreIOError`` and subclasses) and for any check that carries a fault
        without showing damage, the key's refusal for ``KEY``, ``StoreMissing``, ``NotADatabase`` or
        ``StoreCorrupt`` for damage. The caller adds what to do in its own words."""
        if self.fault is not None and not self.damaged:
            # The disk refused or the key does not fit (IO_ERROR, KEY), or a check that
            # passed read-only after the disk refused a normal open: the refusal is the error.
            return self.fault
        message = f"{self.path} failed the open-time check ({self.kind.value}): {self.detail}"
        if self.kind is CheckKind.NOT_A_DATABASE:
            return NotADatabase(message, path=str(self.path), check=self.to_dict())
        if self.kind is CheckKind.MISSING:
            return StoreMissing(message, path=str(self.path), check=self.to_dict())
        if self.index_only:
            return IndexCorrupt(message, path=str(self.path), check=self.to_dict())
        return StoreCorrupt(message, path=str(self.path), check=self.to_dict())


def _has_backup(backups_dir: Path | None, db_name: str) -> bool:
    return backups_dir is not None and bool(list_backups(backups_dir, db_name))


def _shm_frames(shm: Path) -> int:
    try:
        hdr = read_head(shm, 48)  # not open(): it would drop this process's shm locks
    except OSError:
        return 0
    if len(hdr) < 48:
        return 0
    return int(struct.unpack("=IIIBBHII8s8s8s", hdr)[6])


def open_check(
    path: Path,
    config: StoreConfig,
    *,
    backups_dir: Path | None = None,
    db_name: str | None = None,
    full: bool = False,
    expected: bool = False,
    key: DatabaseKey | None = None,
) -> OpenCheck:
    """Cheap, read-only health check of a closed (or shared) database file.

    ``key`` checks an encrypted database. A file and key that do not go together (no key
    for an encrypted file, a key no page authenticates under, a key for a plaintext file)
    is ``KEY``, carrying the typed ``StoreKeyError`` as its ``fault``: never damage.

    ``full=True`` runs ``integrity_check`` with no size or time bound instead.
    ``expected=True`` says the file is known to have existed (the home records it): a
    missing file is then ``MISSING``, never ``NEW``.

    Failures are classified by cause. A file the disk will not let us read or check (full
    disk, read-only media, permissions, "unable to open", an I/O error) is an I/O condition:
    the check is retried read-only, writing nothing (``fault`` names the condition), and
    when even that cannot run the kind is ``IO_ERROR``. Only evidence of damage (a bad
    header, rows from ``quick_check``, ``SQLITE_CORRUPT``/``SQLITE_NOTADB`` from a file
    that was read) is ``CORRUPT`` and the other :attr:`CheckKind.damaged` kinds.
    """
    started = time.monotonic()
    path = Path(path).absolute()
    try:
        return _open_check(
            path,
            config,
            backups_dir=backups_dir,
            db_name=db_name,
            full=full,
            expected=expected,
            key=key,
        )
    except OSError as err:  # stat or the header read refused: EACCES, EIO, ...
        fault = io_error(path, err_no=err.errno, what="checking it", text=err.strerror)
        return OpenCheck(
            path, CheckKind.IO_ERROR, fault.message, (), time.monotonic() - started, fault
        )


def _open_check(
    path: Path,
    config: StoreConfig,
    *,
    backups_dir: Path | None,
    db_name: str | None,
    full: bool,
    expected: bool,
    key: DatabaseKey | None = None,
) -> OpenCheck:
    started = time.monotonic()
    name = db_name or path.stem
    wal, shm = Path(str(path) + "-wal"), Path(str(path) + "-shm")

    def done(kind: CheckKind, detail: str, output: tuple[str, ...] = ()) -> OpenCheck:
        return OpenCheck(path, kind, detail, output, time.monotonic() - started)

    if not path.exists():
        if wal.exists() or shm.exists() or _has_backup(backups_dir, name):
            return done(
                CheckKind.MISSING,
                f"{path} is missing, but its -wal/-shm or backups exist: it was deleted",
            )
        if expected:
            return done(
                CheckKind.MISSING,
                f"{path} is missing, but this home has held it: it was deleted or moved",
            )
        return done(CheckKind.NEW, "no database yet")
    size = path.stat().st_size
    if size == 0:
        if (wal.exists() and wal.stat().st_size > 0) or _has_backup(backups_dir, name) or expected:
            return done(CheckKind.EMPTY, f"{path} was truncated to 0 bytes")
        return done(CheckKind.NEW, "empty file: a new database")
    header = read_head(path, 100)  # not open(): see _rawread
    kind = classify(header)
    refusal: StoreError | None = None
    if kind is FileKind.ENCRYPTED and key is None:
        refusal = missing_key(path)
    elif kind is FileKind.PLAIN and key is not None:
        refusal = not_encrypted(path)
    if refusal is not None:
        return OpenCheck(
            path, CheckKind.KEY, refusal.message, (), time.monotonic() - started, refusal
        )
    if kind is not FileKind.ENCRYPTED and (len(header) < 100 or not header.startswith(_HEADER)):
        return done(
            CheckKind.NOT_A_DATABASE,
            f"{path} is not an SQLite database (header {header[:16]!r})",
        )
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if kind is FileKind.ENCRYPTED and key is not None and size >= page_size:
        # The page count (bytes 28..31) is encrypted: read it from page 1 decrypted here.
        # A page 1 that does not authenticate is left to the check (wrong key, or damage).
        from bastion.store.crypt.pages import decrypt_page

        header = (decrypt_page(key, read_head(path, page_size), 1) or b"")[:100] or header
    pages = int.from_bytes(header[28:32], "big") if header.startswith(_HEADER) else 0
    if page_size and size % page_size:
        return done(
            CheckKind.TRUNCATED,
            f"{path} is {size} bytes, not a whole number of {page_size}-byte pages",
        )
    if (
        page_size
        and pages
        and size < page_size * pages
        and short_without_wal(path, page_size * pages)
    ):
        size = path.stat().st_size
        return done(
            CheckKind.TRUNCATED,
            f"{path} is truncated: header declares {pages} pages ({pages * page_size} bytes), "
            f"file has {size}",
        )
    frames = _shm_frames(shm) if shm.exists() else 0
    if frames and not wal.exists():
        return done(
            CheckKind.WAL_LOST,
            f"{path}-wal was removed while the database was closed: the wal-index records "
            f"{frames} committed frames that are gone",
        )
    if frames and wal.exists() and page_size:
        needed = 32 + frames * (page_size + 24)
        if wal.stat().st_size < needed:
            return done(
                CheckKind.WAL_LOST,
                f"{path}-wal is {wal.stat().st_size} bytes but {frames} committed frames "
                f"need {needed}: it was truncated",
            )
    if not full and size > config.open_check_max_bytes:
        return done(
            CheckKind.INCONCLUSIVE,
            f"quick_check skipped: {size} bytes is over open_check_max_bytes "
            f"({config.open_check_max_bytes})",
        )
    return _run_check(path, config, full=full, started=started, key=key)


def _run_check(
    path: Path,
    config: StoreConfig,
    *,
    full: bool,
    started: float,
    key: DatabaseKey | None = None,
) -> OpenCheck:
    """quick_check (or integrity_check) on a read-only connection to the file; when the disk
    refuses that (or would make SQLite create companions with the wrong mode), again through
    the read-only target that writes nothing at all."""
    # A file this process may not write is never handed to a normal connection: SQLite would
    # create -wal/-shm with the database's own mode.
    blocked = write_blocker(path, what="checking it")
    first = blocked or _check_direct(path, config, full=full, started=started, key=key)
    if isinstance(first, OpenCheck):
        return first
    fault: StoreError = first
    # The disk refused: an I/O condition. Check again without writing anything.
    try:
        uri, flags, how = readonly_target(path)
        conn = connect(uri, flags=flags, key=key)
    except (StoreError, apsw.Error) as err:
        reason = err if isinstance(err, StoreError) else translate(err, path=str(path))
        return OpenCheck(
            path,
            CheckKind.IO_ERROR,
            f"the check could not run: {fault.message}; read-only either: {reason.message}",
            (),
            time.monotonic() - started,
            fault,
        )
    conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
    result = _check_on(conn, path, config, full=full, started=started, key=key)
    if isinstance(result, StoreError):
        return OpenCheck(
            path,
            CheckKind.IO_ERROR,
            f"the check could not run: {fault.message} ({how}: {result.message})",
            (),
            time.monotonic() - started,
            fault,
        )
    return dataclasses.replace(result, detail=f"{result.detail} ({how})", fault=fault)


def _check_direct(
    path: Path, config: StoreConfig, *, full: bool, started: float, key: DatabaseKey | None
) -> OpenCheck | StoreError:
    # Read-only: the check writes nothing, and the same quick_check runs in about half the
    # time (a third to a half here, measured on 150 MB; issue 22 §7). The connection still
    # shares the -shm (it can rebuild a stale wal-index), so it reads committed WAL frames.
    companions = [Path(f"{path}{suffix}") for suffix in ("-wal", "-shm")]
    had_companions = any(c.exists() for c in companions)
    try:
        conn = connect(str(path), flags=apsw.SQLITE_OPEN_READONLY, key=key)
    except apsw.Error as err:
        return translate(err, path=str(path), what="opening it for the check")
    result = _check_on(conn, path, config, full=full, started=started, key=key)
    if not had_companions:
        _drop_companions(path, key)
    return result


def _drop_companions(path: Path, key: DatabaseKey | None) -> None:
    """A read-only connection to a closed WAL database creates an empty -wal and a -shm and
    leaves them. A normal connection closing last removes them, as SQLite always does (and
    with another connection open it leaves them, as it must); with nothing in the WAL its
    checkpoint writes nothing. The files around a closed database stay as they were."""
    try:
        conn = connect(str(path), flags=apsw.SQLITE_OPEN_READWRITE, key=key)
    except apsw.Error:
        return
    try:
        # A read opens the WAL (before anything of the file is parsed), so the close sees it.
        with contextlib.suppress(apsw.Error):
            conn.execute("PRAGMA schema_version").fetchall()
    finally:
        with contextlib.suppress(apsw.Error):
            conn.close()


class _Deadline:
    """Interrupts ``conn``'s running statement after ``seconds``, from a timer thread;
    :meth:`cancel` once the statement is over (an interrupt never reaches a connection
    being closed, or closed)."""

    def __init__(self, conn: apsw.Connection, seconds: float) -> None:
        self.fired = False
        self._conn = conn
        self._lock = threading.Lock()
        self._over = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if not self._over:
                self.fired = True
                self._conn.interrupt()

    def cancel(self) -> None:
        with self._lock:
            self._over = True
        self._timer.cancel()


def _check_on(
    conn: apsw.Connection,
    path: Path,
    config: StoreConfig,
    *,
    full: bool,
    started: float,
    key: DatabaseKey | None = None,
) -> OpenCheck | StoreError:
    """Run the check on ``conn`` (closed here). An I/O refusal is returned as the typed
    error, for the caller to retry read-only; damage and results are an ``OpenCheck``."""
    pragma = "integrity_check" if full else "quick_check"
    # The time limit is a timer that interrupts the connection (sqlite3_interrupt may be
    # called from any thread), not a progress handler: SQLite would call a Python handler
    # every N steps, each call taking the GIL, so a check running on a thread while the
    # daemon imports its server stack (issue 22 §7) waited for the importing thread at every
    # call (up to the 5 ms switch interval each; ~270 calls on 150 MB) instead of running
    # beside it. Now the check calls nothing in Python from start to end.
    limit = None if full else _Deadline(conn, config.open_check_max_s)
    try:
        conn.setbusytimeout(config.busy_timeout_ms)
        try:
            output = tuple(str(r[0]) for r in conn.execute(f"PRAGMA {pragma}"))
        finally:
            if limit is not None:
                limit.cancel()
    except apsw.InterruptError:
        return OpenCheck(
            path,
            CheckKind.INCONCLUSIVE,
            f"{pragma} interrupted after open_check_max_s={config.open_check_max_s}",
            (),
            time.monotonic() - started,
        )
    except apsw.BusyError as err:
        # Another process holds the database exclusively: nothing is known, nothing is bad.
        return OpenCheck(
            path,
            CheckKind.INCONCLUSIVE,
            f"{pragma} could not run: the database is locked by another process ({err})",
            (),
            time.monotonic() - started,
        )
    except (apsw.CorruptError, apsw.NotADBError) as err:
        # A wrong key reads as "not a database" too: the pages tell which it is.
        refusal = key_refusal(path, key) if key is not None else None
        if refusal is not None:
            return OpenCheck(
                path, CheckKind.KEY, refusal.message, (), time.monotonic() - started, refusal
            )
        # SQLite read the file and found it damaged: evidence, not a refusal.
        return OpenCheck(
            path,
            CheckKind.CORRUPT,
            f"{pragma} could not run: {err}",
            (str(err),),
            time.monotonic() - started,
        )
    except apsw.Error as err:
        if is_fts5_damage(err):
            # FTS5 cannot open one of its indexes ("invalid fts5 file format"): the file was
            # read and an index in it is damaged, which is evidence, not the disk refusing.
            text = str(err)
            return OpenCheck(
                path,
                CheckKind.CORRUPT,
                f"{pragma} could not run: {text}",
                (text if text.startswith("fts5:") else f"fts5: {text}",),
                time.monotonic() - started,
            )
        if limit is not None and limit.fired:  # pragma: no cover - reported differently
            return OpenCheck(path, CheckKind.INCONCLUSIVE, str(err), (), 0.0)
        # Disk full, read-only media, permissions, a -shm that cannot be created or grown,
        # a device error: the disk refused, which says nothing about the data.
        return translate(err, path=str(path), what=f"running {pragma}", conn=conn)
    finally:
        # The result is known by now, and closing a read-only connection writes nothing: a
        # device that failed the check's reads can fail the close's unlock too (the
        # connection is closed all the same), which must not replace the typed result
        # with a raw driver error.
        with contextlib.suppress(apsw.Error):
            conn.close()
    if output == ("ok",):
        return OpenCheck(path, CheckKind.OK, f"{pragma} ok", output, time.monotonic() - started)
    # SQLite may pack many findings into one row, one per line: count and quote lines.
    lines = [line for row in output for line in row.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("*** in database")] or lines
    shown = "; ".join(lines[:3]) + (f"; ... ({len(lines) - 3} more)" if len(lines) > 3 else "")
    return OpenCheck(
        path,
        CheckKind.CORRUPT,
        f"{pragma} found {len(lines)} problem(s): {shown}",
        tuple(lines[:100]),
        time.monotonic() - started,
    )


# --- recover ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What a recovery did: the check that failed, the files quarantined, what was put in place, the
    rows salvaged."""

    db_path: Path
    quarantine_dir: Path
    check: OpenCheck
    quarantined: tuple[Path, ...]
    restored_from: Path | None
    placed: str  # "backup", "salvage", or "nothing"
    salvage: SalvageResult | None
    rows_in_backup: dict[str, int]
    rows_salvaged: dict[str, int]
    rows_only_in_salvage: dict[str, int]
    report_path: Path

    def to_dict(self) -> dict[str, Any]:
        """The recovery as JSON-ready data."""
        return {
            "db": str(self.db_path),
            "quarantine_dir": str(self.quarantine_dir),
            "failed_check": self.check.to_dict(),
            "quarantined": [str(p) for p in self.quarantined],
            "restored_from": str(self.restored_from) if self.restored_from else None,
            "placed": self.placed,
            "salvage": self.salvage.to_dict() if self.salvage else None,
            "rows_in_backup": self.rows_in_backup,
            "rows_salvaged": self.rows_salvaged,
            "rows_only_in_salvage": self.rows_only_in_salvage,
            "report": str(self.report_path),
        }


def recover(
    db_path: Path,
    *,
    backups_dir: Path,
    quarantine_root: Path,
    check: OpenCheck,
    db_name: str | None = None,
    on_event: EventSink | None = None,
    now: dt.datetime | None = None,
    allow_empty: bool = False,
    key: DatabaseKey | None = None,
) -> RecoveryReport:
    """DESTRUCTIVE (the live files move) but atomic: quarantine, restore, salvage, report.

    ``db_path`` must be closed in this process. ``check`` is the failed :func:`open_check`
    (or one made by the operator) and goes into the report; it must show damage: an I/O
    condition (``IO_ERROR``, or any check carrying a ``fault``) is raised as its typed error
    and nothing is touched -- a full disk is not a damaged database.

    Nothing moves until everything that will be written fits and was written: the disk's
    free space and the directories' modes are checked first (:func:`~bastion.store._swap.
    preflight`); the damaged file is salvaged where it lies (read-only) into
    ``quarantine/<utc>/``; the replacement (the newest verified backup, else the salvaged
    rows) is built beside the live file, 0600 and fsynced; ``report.json`` is written; only
    then are the live file and its ``-wal``/``-shm`` renamed into quarantine and the
    replacement renamed in. A failure at any step leaves the live database where and as it
    was, removes what this call wrote, and raises the typed cause. With nothing to put in
    place, ``allow_empty`` places a new empty database (the daemon, for a file it could
    quarantine); otherwise ``StoreMissing`` is raised and nothing moves.

    ``key`` is the database's key (an encrypted database): only backups it opens are
    restored, the salvaged copy and an empty replacement are encrypted with it. A check
    of kind ``KEY`` (a missing or wrong key) is raised as its typed error, like an I/O
    condition: nothing moves.
    """
    db_path = Path(db_path).absolute()
    name = db_name or db_path.stem
    if check.kind is CheckKind.IO_ERROR or (check.fault is not None and not check.damaged):
        raise check.error()
    if not check.damaged:
        raise ValueError(f"recover needs a failed check showing damage, got {check.kind.value}")
    wal = Path(str(db_path) + "-wal")
    backup: BackupInfo | None = newest_verified_backup(backups_dir, name, key=key)
    source_bytes = _size(db_path) + _size(wal)
    # The replacement beside the live file is the backup, or at most the salvaged rows
    # (never more than the source), or a new empty database; salvage needs a private copy
    # of the source and its output (at most the source's size) in quarantine/.
    needs = {
        "the replacement beside the live file": (
            backup.size_bytes if backup is not None else max(source_bytes, _EMPTY_DB_BYTES)
        ),
        "salvage working space": 2 * source_bytes,
    }
    preflight(db_path, quarantine_root, needs=needs, what=f"recovering {db_path.name}")
    qdir = quarantine_root / utc_stamp(now)
    tmp = replacement_path(db_path, "recover")
    made_qdir = not qdir.exists()
    written: list[Path] = []
    try:
        remove_quietly(tmp)  # left by a recovery that was killed: ours, and never in place
        ensure_private_dir(qdir)
        result: SalvageResult | None = None
        salvage_error = None
        if db_path.exists() and _size(db_path) > 0:
            if not (qdir / "salvaged.db").exists():  # salvage refuses to write over one
                written.append(qdir / "salvaged.db")
            try:
                # Imported here: salvage (and the AEGIS page cipher it reads encrypted pages
                # with) is for a damaged file only, never for the daemon's start (#22 §7).
                from bastion.store.salvage import salvage

                result = salvage(db_path, qdir / "salvaged.db", key=key)
            except OSError as err:
                if err.errno in _NO_SPACE:
                    raise  # the disk filled up meanwhile: abort, nothing has moved
                salvage_error = str(err)
            except (apsw.Error, StoreError) as err:
                salvage_error = str(err)
        if backup is not None:
            placed = "backup"
            copy_private(backup.path, tmp)
        elif result is not None and result.total_rows > 0:
            # No good backup: the salvaged rows are the best copy there is.
            placed = "salvage"
            copy_private(result.dest, tmp)
        elif allow_empty:
            placed = "empty"
            _create_empty_database(tmp, key)
        else:
            state = "is missing and " if not db_path.exists() else ""
            raise StoreMissing(
                f"{db_path.name} {state}cannot be recovered: there is no verified backup of "
                f"{name} in {backups_dir} and nothing could be salvaged"
                + (f" ({salvage_error})" if salvage_error else "")
                + f". Nothing was moved or created: {db_path.parent} is as it was.",
                hint="Put a copy of the database back in place yourself, or run `bastion db "
                "recover --allow-empty` to start with an empty database on purpose.",
                path=str(db_path),
            )
        report_path = qdir / "report.json"
        rows_backup = dict((backup.manifest or {}).get("row_counts") or {}) if backup else {}
        rows_salvaged = {n: t.rows for n, t in result.tables.items()} if result else {}
        only_in_salvage = (
            _rows_missing_from(result.dest, backup.path, key)
            if result is not None and backup
            else {}
        )
        moving = [p for p in (wal, Path(str(db_path) + "-shm"), db_path) if p.exists()]
        report = RecoveryReport(
            db_path=db_path,
            quarantine_dir=qdir,
            check=check,
            quarantined=tuple(qdir / p.name for p in moving),
            restored_from=backup.path if backup else None,
            placed=placed,
            salvage=result,
            rows_in_backup=rows_backup,
            rows_salvaged=rows_salvaged,
            rows_only_in_salvage=only_in_salvage,
            report_path=report_path,
        )
        body = report.to_dict()
        body["created_at"] = dt.datetime.now(dt.UTC).isoformat()
        body["salvage_error"] = salvage_error
        body["next_steps"] = (
            "Rows only in the salvaged copy can be merged back with "
            "`bastion db recover --from-salvage` (conflicts are reported, never overwritten)."
        )
        # Written before the swap, so a recovery that happened always has its report.
        written.append(report_path)
        atomic_write(report_path, json.dumps(body, indent=2, sort_keys=True) + "\n")
        swap_in(tmp, db_path, qdir)
    except OSError as err:
        _undo(tmp, qdir if made_qdir else None, written)
        raise io_error(
            db_path, err_no=err.errno, what="recovering it (nothing was moved)", text=err.strerror
        ) from err
    except apsw.Error as err:
        _undo(tmp, qdir if made_qdir else None, written)
        raise translate(err, path=str(db_path), what="recovering it (nothing was moved)") from err
    except BaseException:
        _undo(tmp, qdir if made_qdir else None, written)
        raise
    if on_event:
        on_event(
            "store.quarantined",
            name,
            {"reason": check.detail, "kind": check.kind.value, "dir": str(qdir)},
        )
        on_event(
            "store.restored",
            name,
            {
                "placed": placed,
                "backup": str(backup.path) if backup else None,
                "report": str(report_path),
            },
        )
    return report


#: errnos that mean the disk is out of space (or quota).
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
#: A new empty WAL database: one page (4 KiB), rounded up for what SQLite adds.
_EMPTY_DB_BYTES = 64 * 1024


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _create_empty_database(path: Path, key: DatabaseKey | None = None) -> None:
    """A new, empty SQLite database in WAL mode at ``path`` (0600, durable; encrypted with
    ``key`` when given)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    conn = connect(str(path), key=key)
    try:
        conn.execute("PRAGMA journal_mode = WAL").fetchall()
    finally:
        conn.close()  # checkpoints the header into the file and removes -wal/-shm
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _undo(tmp: Path, qdir: Path | None, written: list[Path]) -> None:
    """Remove what an aborted recovery wrote (never a live file: those were not moved, or
    were moved back by swap_in)."""
    remove_quietly(tmp)
    for path in written:
        remove_quietly(path)
    if qdir is not None:
        with contextlib.suppress(OSError):
            qdir.rmdir()  # only if empty: anything else in it is not ours to delete


def _ro(path: Path) -> str:
    return f"file:{sqlite_uri_path(path)}?mode=ro&immutable=1"


def _rows_missing_from(
    salvaged: Path, backup: Path, key: DatabaseKey | None = None
) -> dict[str, int]:
    """Per table: salvaged rowids the backup does not have (rows written after the backup)."""
    flags = apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
    conn = connect(_ro(salvaged), flags=flags, key=key)
    try:
        if key is None:
            conn.execute("ATTACH ? AS b", (_ro(backup),))
        else:  # the key as a bound value: never in a statement's text or an error message
            conn.execute("ATTACH ? AS b KEY ?", (_ro(backup), key.pragma_text()))
        out: dict[str, int] = {}
        tables = [
            str(r[0])
            for r in conn.execute(
                "SELECT name FROM main.sqlite_schema WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' AND name IN "
                "(SELECT name FROM b.sqlite_schema WHERE type = 'table')"
            )
        ]
        for t in tables:
            q = '"' + t.replace('"', '""') + '"'
            try:
                rows: list[Any] = conn.execute(
                    f"SELECT count(*) FROM main.{q} WHERE rowid NOT IN (SELECT rowid FROM b.{q})"
                ).fetchall()
                out[t] = int(rows[0][0])
            except apsw.SQLError:
                continue  # WITHOUT ROWID: no rowid to compare by
        return out
    finally:
        conn.close()


def latest_salvage(quarantine_root: Path, db_name: str) -> Path | None:
    """The newest ``quarantine/<utc>/salvaged.db`` made from ``db_name``, or None."""
    if not quarantine_root.is_dir():
        return None
    for qdir in sorted(quarantine_root.iterdir(), reverse=True):
        candidate = qdir / "salvaged.db"
        report = qdir / "report.json"
        if not candidate.exists():
            continue
        try:
            data = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if Path(str(data.get("db", ""))).stem == db_name:
            return candidate
    return None


# --- merge back --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class MergeReport:
    """What merging salvaged rows back did, per table: inserted, identical, conflicts."""

    salvaged: Path
    inserted: dict[str, int]
    identical: dict[str, int]
    conflicts: dict[str, int]
    conflict_samples: tuple[Mapping[str, Any], ...]
    skipped_tables: dict[str, str]
    dry_run: bool

    def to_dict(self) -> dict[str, Any]:
        """The merge as JSON-ready data."""
        return {
            "salvaged": str(self.salvaged),
            "inserted": self.inserted,
            "identical": self.identical,
            "conflicts": self.conflicts,
            "conflict_samples": list(self.conflict_samples),
            "skipped_tables": self.skipped_tables,
            "dry_run": self.dry_run,
        }


def merge_salvage(
    db: Database,
    salvaged: Path,
    *,
    tables: list[str] | None = None,
    dry_run: bool = False,
    batch: int = 500,
) -> MergeReport:
    """Insert rows of ``salvaged`` whose rowid the live table lacks; never overwrite.

    A row whose rowid exists with other content, or whose insert hits a UNIQUE/FK constraint,
    is a conflict: counted, sampled in the report, and left out. Runs in batches of ``batch``
    rows per write transaction so other writers keep going.
    """
    src = connect(
        _ro(salvaged), flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI, key=db._key
    )
    inserted: dict[str, int] = {}
    identical: dict[str, int] = {}
    conflicts: dict[str, int] = {}
    samples: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    try:
        names = [
            str(r[0])
            for r in src.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        live_tables = {
            str(r[0]) for r in db.query("SELECT name FROM sqlite_schema WHERE type = 'table'")
        }
        # A virtual table's own storage (an FTS5 index's pages) is kept by the virtual table:
        # rows written into it directly would corrupt it. Its content table's rows are merged,
        # and its triggers index them.
        shadows = {str(r[1]) for r in db.query("PRAGMA main.table_list") if r[2] == "shadow"}
        virtual = {str(r[1]) for r in db.query("PRAGMA main.table_list") if r[2] == "virtual"}
        for table in names:
            if tables is not None and table not in tables:
                continue
            if table in shadows or table in virtual:
                skipped[table] = "a virtual table's storage (rebuilt from its content)"
                continue
            if table not in live_tables:
                skipped[table] = "not in the live database"
                continue
            q = '"' + table.replace('"', '""') + '"'
            live_cols = [str(r[1]) for r in db.query(f"PRAGMA table_info({q})")]
            src_cols = {str(r[1]) for r in src.execute(f"PRAGMA table_info({q})")}
            cols = [c for c in live_cols if c in src_cols]
            pk = [str(r[1]) for r in db.query(f"PRAGMA table_info({q})") if int(r[5]) > 0]
            try:
                src.execute(f"SELECT rowid FROM {q} LIMIT 0").fetchall()
            except apsw.SQLError:
                skipped[table] = "WITHOUT ROWID tables are not merged"
                continue
            alias = len(pk) == 1 and pk[0] in cols and _is_alias(db, q, pk[0])
            col_sql = ", ".join('"' + c.replace('"', '""') + '"' for c in cols)
            rows = src.execute(f"SELECT rowid, {col_sql} FROM {q} ORDER BY rowid").fetchall()
            counts = {"inserted": 0, "identical": 0, "conflicts": 0}
            for start in range(0, len(rows), batch):
                chunk = rows[start : start + batch]
                _merge_chunk(
                    db,
                    table=table,
                    q=q,
                    cols=cols,
                    col_sql=col_sql,
                    alias=alias,
                    chunk=chunk,
                    counts=counts,
                    samples=samples,
                    dry_run=dry_run,
                )
            inserted[table] = counts["inserted"]
            identical[table] = counts["identical"]
            conflicts[table] = counts["conflicts"]
    finally:
        src.close()
    return MergeReport(
        salvaged, inserted, identical, conflicts, tuple(samples[:100]), skipped, dry_run
    )


def _is_alias(db: Database, q: str, column: str) -> bool:
    for r in db.query(f"PRAGMA table_info({q})"):
        if str(r[1]) == column:
            return str(r[2]).upper() == "INTEGER"
    return False


def _merge_chunk(
    db: Database,
    *,
    table: str,
    q: str,
    cols: list[str],
    col_sql: str,
    alias: bool,
    chunk: list[Any],
    counts: dict[str, int],
    samples: list[dict[str, Any]],
    dry_run: bool,
) -> None:
    from bastion.store.engine import WriteTx

    target = col_sql if alias else f"rowid, {col_sql}"
    marks = ", ".join("?" for _ in range(len(cols) + (0 if alias else 1)))
    insert = f"INSERT INTO {q} ({target}) VALUES ({marks})"

    def unit(tx: WriteTx) -> dict[str, int]:
        local = {"inserted": 0, "identical": 0, "conflicts": 0}
        for row in chunk:
            rowid, values = row[0], tuple(row[1:])
            existing = tx.query_one(f"SELECT {col_sql} FROM {q} WHERE rowid = ?", (rowid,))
            if existing is not None:
                if tuple(existing) == values:
                    local["identical"] += 1
                else:
                    local["conflicts"] += 1
                    samples.append(
                        {"table": table, "rowid": rowid, "reason": "rowid exists with other values"}
                    )
                continue
            if dry_run:
                local["inserted"] += 1
                continue
            try:
                tx.execute(insert, values if alias else (rowid, *values))
                local["inserted"] += 1
            except apsw.ConstraintError as err:
                # The statement alone is undone (ABORT); the transaction goes on.
                local["conflicts"] += 1
                samples.append({"table": table, "rowid": rowid, "reason": str(err)})
        return local

    result = db.write(unit)
    for key, value in result.items():
        counts[key] += value
