"""The open-time check of a database file: cheap, read-only, classified by cause.

:func:`open_check` looks at the files first (missing, emptied, not SQLite, shorter than the
header says, a WAL that vanished while committed frames were recorded in the wal-index) and
then runs ``quick_check`` if the file is under the configured size, interrupted at the
configured time (an interrupted check is *inconclusive*, not a failure: a large healthy
database must still open). Its :class:`OpenCheck` says what was found; what to do about
damage (quarantine, restore, salvage) is :mod:`bastion.store.recovery`'s, which re-exports
these names.

Why a module of its own: every open of a home runs this check, and ``bastion serve`` runs it
on a thread while the main thread imports the server stack (issue 22 §7). Whatever the check
imports holds the GIL against those imports, so it imports only what a sound file's check
runs: the recovery stack (backups, snapshot copies, the swap) stays unloaded unless the
check finds something to act on. What only a rarer path needs is imported on that path:
the backups' listing (a missing or empty file), the read-only target (the disk refused), the
key's refusals (an encrypted file, a key given).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import struct
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw

from bastion.errors import IndexCorrupt, NotADatabase, StoreCorrupt, StoreError, StoreMissing
from bastion.store._diagnose import io_error, write_blocker
from bastion.store._errors import is_fts5_damage, translate
from bastion.store._rawread import read_head
from bastion.store.crypt.cipher import FileKind, classify, connect
from bastion.store.header import short_without_wal

if TYPE_CHECKING:
    from bastion.config import StoreConfig
    from bastion.store.crypt.key import DatabaseKey

__all__ = ["CheckKind", "OpenCheck", "open_check"]

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
    if backups_dir is None:
        return False
    # Asked only of a file that is missing or empty: backup.py is not for a sound open.
    from bastion.store.backup import list_backups

    return bool(list_backups(backups_dir, db_name))


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
        from bastion.store.crypt.refusal import missing_key

        refusal = missing_key(path)
    elif kind is FileKind.PLAIN and key is not None:
        from bastion.store.crypt.refusal import not_encrypted

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
    from bastion.store._readonly import readonly_target

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
        refusal = None
        if key is not None:
            from bastion.store.crypt.refusal import key_refusal

            refusal = key_refusal(path, key)
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
