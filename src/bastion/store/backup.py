"""Online backups: create, verify, list, rotate and restore SQLite backup files.

A backup is a pair in ``backups/``: ``<db>-<utc>.db`` and its manifest ``<db>-<utc>.db.json``.

Creating one (:func:`create_backup`) never stops writers. A separate read-only connection opens
a read transaction first, so the SQLite backup API copies *one snapshot* in steps while the
writer keeps committing into the WAL (without the open transaction, every commit by another
connection would restart the copy, and a busy database would never finish). The copy goes to a
temporary file in ``backups/``, is switched to rollback-journal mode (a backup must be one
self-contained file, with no ``-wal`` to lose), verified (``quick_check``, page count, schema
fingerprint against the source snapshot), hashed (SHA-256), and only then renamed into place,
followed by its manifest. A crash at any point leaves either no backup or a complete one; a
``.db`` without a manifest is listed as unverified and never used for a restore.

:func:`restore_backup` verifies a backup fully (manifest, hash, ``quick_check``, schema, row
counts) before touching anything; then it moves the live database and its ``-wal`` and ``-shm``
*together* into ``quarantine/<utc>-restore/`` (the WAL holds committed transactions: it is
never deleted, and never left next to a different database file, whose pages it would
overwrite) and puts a copy of the backup in place atomically.

Destructive functions say so in their docstrings: :func:`rotate_backups` deletes backup files,
:func:`restore_backup` replaces the live database (moving the old one aside).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw

from bastion.__about__ import __version__
from bastion._fs import atomic_replace, atomic_write, ensure_private_dir, fsync_dir
from bastion.errors import BackupError, RestoreRefused, StoreError, StoreIOError
from bastion.store._errors import translate

if TYPE_CHECKING:
    from bastion.config import BackupConfig, Config
    from bastion.store.engine import Database

__all__ = [
    "MANIFEST_FORMAT",
    "BackupInfo",
    "BackupResult",
    "EventSink",
    "FileFacts",
    "ProgressCallback",
    "RestoreResult",
    "SourceState",
    "backup_status",
    "create_backup",
    "inspect_file",
    "list_backups",
    "move_to_quarantine",
    "newest_verified_backup",
    "place_file",
    "plan_rotation",
    "read_source_state",
    "restore_backup",
    "rotate_backups",
    "run_scheduled_backup",
    "schema_fingerprint",
    "utc_stamp",
    "verify_backup",
]

log = logging.getLogger("bastion.store.backup")

MANIFEST_FORMAT = 1
#: Pages copied per backup step: small enough that the source read lock is shared often and
#: progress moves, large enough that the per-step overhead is noise (4096 x 4 KiB = 16 MiB).
DEFAULT_STEP_PAGES = 4096
COMPANIONS = ("-wal", "-shm")

#: ``fn(copied_pages, total_pages)``, called after every step.
ProgressCallback = Callable[[int, int], None]
#: ``fn(kind, subject, data)``: where "backup.created" and friends go (events table, logs).
EventSink = Callable[[str, str, Mapping[str, Any]], None]


# --- values ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SourceState:
    """Where the source database was when the snapshot was taken.

    ``wal_change`` is the wal-index change counter (bumped by every commit), ``wal_frames``
    the last valid frame (``mxFrame``), ``wal_salt`` changes whenever the WAL restarts; with
    the main file's size and mtime they tell whether anything changed since a backup.
    """

    db_bytes: int
    db_mtime_ns: int
    wal_bytes: int
    wal_frames: int
    wal_change: int
    wal_salt: str
    checkpoint_seq: int
    read_at: str

    def same_data_as(self, other: SourceState) -> bool:
        return (
            self.db_bytes,
            self.db_mtime_ns,
            self.wal_frames,
            self.wal_change,
            self.wal_salt,
        ) == (other.db_bytes, other.db_mtime_ns, other.wal_frames, other.wal_change, other.wal_salt)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SourceState:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True, slots=True)
class FileFacts:
    """What a database file contains, read without modifying it."""

    page_size: int
    page_count: int
    size_bytes: int
    schema_fingerprint: str
    row_counts: dict[str, int]
    quick_check: list[str]

    @property
    def ok(self) -> bool:
        return self.quick_check == ["ok"]


@dataclasses.dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    manifest_path: Path
    manifest: dict[str, Any]
    duration_s: float


@dataclasses.dataclass(frozen=True, slots=True)
class BackupInfo:
    """One backup as listed: ``verified`` is True only with an intact manifest (and, after a
    deep check, a matching hash and a clean ``quick_check``)."""

    path: Path
    db_name: str
    created_at: dt.datetime
    size_bytes: int
    verified: bool
    problem: str | None
    manifest: dict[str, Any] | None
    deep: bool

    def age_s(self, now: dt.datetime | None = None) -> float:
        now = now or dt.datetime.now(dt.UTC)
        return (now - self.created_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "db": self.db_name,
            "created_at": self.created_at.isoformat(),
            "age_s": round(self.age_s(), 1),
            "size_bytes": self.size_bytes,
            "verified": self.verified,
            "deep_verified": self.deep and self.verified,
            "problem": self.problem,
            "vacuum": bool((self.manifest or {}).get("vacuum", False)),
            "row_counts": (self.manifest or {}).get("row_counts"),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class RestoreResult:
    backup: Path
    target: Path
    quarantine_dir: Path
    quarantined: list[Path]
    replaced_bytes: int
    restored_rows: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "backup": str(self.backup),
            "target": str(self.target),
            "quarantine_dir": str(self.quarantine_dir),
            "quarantined": [str(p) for p in self.quarantined],
            "replaced_bytes": self.replaced_bytes,
            "restored_rows": self.restored_rows,
        }


# --- helpers -----------------------------------------------------------------------------


def utc_stamp(now: dt.datetime | None = None) -> str:
    """``20261123T120102_123456Z``: sorts by time, safe in file names."""
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S_%fZ")


def _parse_stamp(stamp: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(stamp, "%Y%m%dT%H%M%S_%fZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _ro_uri(path: Path) -> str:
    # immutable=1: no locks, no -shm, no -wal: the file is read exactly as it is on disk.
    return f"file:{urllib.parse.quote(str(path))}?mode=ro&immutable=1"


def _open_ro(path: Path) -> apsw.Connection:
    return apsw.Connection(_ro_uri(path), flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)


def _int(value: Any) -> int:
    return int(value)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


class _Sha256Thread:
    """SHA-256 of a file computed on a worker thread; ``result()`` joins and returns it."""

    def __init__(self, path: Path) -> None:
        self._digest = ""
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(path,), name="bastion-sha256")
        self._thread.start()

    def _run(self, path: Path) -> None:
        try:
            self._digest = _sha256(path)
        except BaseException as err:  # re-raised in the caller's thread by result()
            self._error = err

    def result(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._digest


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def schema_fingerprint(conn: apsw.Connection) -> str:
    """SHA-256 of the schema (type, name, table, SQL), independent of page layout."""
    rows = conn.execute(
        "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema "
        "WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
    ).fetchall()
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def _tables(conn: apsw.Connection) -> list[str]:
    return [
        str(r[0])
        for r in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' "
            "AND coalesce(sql, '') NOT LIKE 'CREATE VIRTUAL%' ORDER BY name"
        )
    ]


def _row_counts(conn: apsw.Connection) -> dict[str, int]:
    return {
        t: _int(conn.execute(f"SELECT count(*) FROM {_quote(t)}").fetchall()[0][0])
        for t in _tables(conn)
    }


def inspect_file(path: Path, *, quick_check: bool = True) -> FileFacts:
    """Read-only facts about a closed database file (or a backup). Never writes to it.

    Raises ``StoreError`` subclasses (``NotADatabase``, ``StoreCorrupt``) when SQLite cannot
    read it at all.
    """
    try:
        conn = _open_ro(path)
    except apsw.Error as err:
        raise translate(err, path=str(path), what="opening for inspection") from err
    try:
        page_size = int(conn.pragma("page_size"))
        page_count = int(conn.pragma("page_count"))
        check = [str(r[0]) for r in conn.execute("PRAGMA quick_check")] if quick_check else ["ok"]
        return FileFacts(
            page_size=page_size,
            page_count=page_count,
            size_bytes=path.stat().st_size,
            schema_fingerprint=schema_fingerprint(conn),
            row_counts=_row_counts(conn),
            quick_check=check,
        )
    except apsw.Error as err:
        raise translate(err, path=str(path), what="inspecting") from err
    finally:
        conn.close()


def read_source_state(db_path: Path) -> SourceState:
    """Read the WAL position from the ``-wal`` header and the wal-index (``-shm``) header.

    Read-only and lock-free: it reads the bytes SQLite keeps there (layout: sqlite's wal.c,
    ``WalIndexHdr``, native byte order). Missing files read as zeros.
    """
    try:
        st = db_path.stat()
        db_bytes, db_mtime = st.st_size, st.st_mtime_ns
    except FileNotFoundError:
        db_bytes, db_mtime = 0, 0
    wal = Path(str(db_path) + "-wal")
    shm = Path(str(db_path) + "-shm")
    wal_bytes = wal.stat().st_size if wal.exists() else 0
    frames = change = ckpt_seq = 0
    salt = ""
    try:
        with open(shm, "rb") as handle:
            hdr = handle.read(48)
        if len(hdr) == 48:
            fields = struct.unpack("=IIIBBHII8s8s8s", hdr)
            change, frames, salt = int(fields[2]), int(fields[6]), fields[9].hex()
    except FileNotFoundError:
        pass
    try:
        with open(wal, "rb") as handle:
            whdr = handle.read(32)
        if len(whdr) == 32:
            ckpt_seq = int(struct.unpack(">I", whdr[12:16])[0])
    except FileNotFoundError:
        pass
    return SourceState(
        db_bytes=db_bytes,
        db_mtime_ns=db_mtime,
        wal_bytes=wal_bytes,
        wal_frames=frames,
        wal_change=change,
        wal_salt=salt,
        checkpoint_seq=ckpt_seq,
        read_at=dt.datetime.now(dt.UTC).isoformat(),
    )


# --- create ------------------------------------------------------------------------------


def create_backup(
    db: Database,
    backups_dir: Path,
    *,
    to: Path | None = None,
    vacuum: bool = False,
    step_pages: int = DEFAULT_STEP_PAGES,
    progress: ProgressCallback | None = None,
    vfs: str | None = None,
    now: dt.datetime | None = None,
) -> BackupResult:
    """Copy ``db`` online into ``backups_dir`` (or the file ``to``), verified, with a manifest.

    Writers keep committing meanwhile; the backup holds the snapshot taken when it started.
    ``vacuum=True`` writes a compacted copy with ``VACUUM INTO`` (one statement; progress is
    reported at the start and the end only). Raises ``StoreIOError`` when the disk refuses a
    write (nothing is left behind), ``BackupError`` when the copy fails verification.
    """
    started = time.monotonic()
    created = now or dt.datetime.now(dt.UTC)
    if to is None:
        final = backups_dir / f"{db.name}-{utc_stamp(created)}.db"
    else:
        final = Path(to).absolute()
        if final.exists():
            raise BackupError(
                f"{final} exists already",
                hint="Choose a new file name; a backup never overwrites a file.",
                recoverable=False,
            )
    try:
        if to is None:
            ensure_private_dir(backups_dir)
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BackupError(
            f"cannot use {final.parent} for backups: {err}",
            hint="Point the backup at a directory you own (mode 0700) with free space.",
        ) from err
    tmp = final.with_name(f".{final.name}.tmp")
    vfs_name = vfs if vfs is not None else getattr(db, "_vfs", None)
    state = read_source_state(db.path)
    src = _open_source(db.path, vfs_name)
    try:
        try:
            # The read transaction pins one snapshot for the whole copy (see module docstring).
            src.execute("BEGIN")
            src.execute("SELECT count(*) FROM sqlite_schema").fetchall()
            source_fp = schema_fingerprint(src)
            source_pages = int(src.pragma("page_count"))
            if vacuum:
                # VACUUM INTO reads its own snapshot and refuses to run inside a transaction.
                src.execute("COMMIT")
            _copy(src, tmp, vacuum=vacuum, step_pages=step_pages, progress=progress, vfs=vfs_name)
        except apsw.Error as err:
            _unlink_quietly(tmp)
            raise _backup_error(err, db.path) from err
        except BaseException:
            _unlink_quietly(tmp)
            raise
        finally:
            if src.in_transaction:
                src.execute("COMMIT")
    finally:
        src.close()

    try:
        # Hash and check at once: hashlib and SQLite both release the GIL on large work.
        sha = _Sha256Thread(tmp)
        try:
            facts = inspect_file(tmp)
        finally:
            digest = sha.result()
        problems = []
        if not facts.ok:
            problems.append(f"quick_check: {'; '.join(facts.quick_check[:5])}")
        if facts.schema_fingerprint != source_fp:
            problems.append("schema fingerprint differs from the source snapshot")
        if not vacuum and facts.page_count != source_pages:
            problems.append(f"page count {facts.page_count} != source {source_pages}")
        if facts.size_bytes != facts.page_count * facts.page_size:
            problems.append(
                f"file size {facts.size_bytes} != {facts.page_count} pages x {facts.page_size}"
            )
        if problems:
            raise BackupError(
                f"backup of {db.path} failed verification: {'; '.join(problems)}",
                problems=problems,
            )
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "kind": "bastion-backup",
            "db_name": db.name,
            "source": str(db.path),
            "file": final.name,
            "created_at": created.isoformat(),
            "size_bytes": facts.size_bytes,
            "sha256": digest,
            "page_size": facts.page_size,
            "page_count": facts.page_count,
            "schema_fingerprint": facts.schema_fingerprint,
            "row_counts": facts.row_counts,
            "source_state": dataclasses.asdict(state),
            "vacuum": vacuum,
            "quick_check": "ok",
            "sqlite_version": apsw.sqlite_lib_version(),
            "bastion_version": __version__,
        }
        manifest_path = final.with_name(final.name + ".json")
        # Data first, manifest second: a crash between leaves an unverified .db, never a
        # manifest that points at nothing.
        atomic_replace(tmp, final)
        manifest["duration_s"] = round(time.monotonic() - started, 3)
        atomic_write(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    except OSError as err:
        _unlink_quietly(tmp)
        raise StoreIOError(
            f"cannot write backup {final}: {err.strerror or err}", path=str(final)
        ) from err
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return BackupResult(final, manifest_path, manifest, time.monotonic() - started)


def _open_source(path: Path, vfs: str | None) -> apsw.Connection:
    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY, vfs=vfs)
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
) -> None:
    _unlink_quietly(tmp)
    total = _int(src.execute("PRAGMA page_count").fetchall()[0][0])
    if vacuum:
        if progress:
            progress(0, total)
        src.execute("VACUUM INTO ?", (str(tmp),)).fetchall()
        os.chmod(tmp, 0o600)
        dest = apsw.Connection(str(tmp), vfs=vfs)
        try:
            dest.pragma("journal_mode", "delete")
        finally:
            dest.close()
        if progress:
            progress(total, total)
        return
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    dest = apsw.Connection(str(tmp), vfs=vfs)
    try:
        with dest.backup("main", src, "main") as job:
            while not job.done:
                job.step(step_pages)
                if progress:
                    progress(job.page_count - job.remaining, job.page_count)
        # A backup is one self-contained file: no WAL next to it to lose or mismatch.
        dest.pragma("journal_mode", "delete")
    finally:
        dest.close()


def _backup_error(err: apsw.Error, path: Path) -> StoreError:
    mapped = translate(err, path=str(path), what="backing up")
    if isinstance(mapped, StoreIOError):
        return mapped
    return BackupError(f"backup of {path} failed: {mapped.message}", recoverable=True)


def _unlink_quietly(path: Path) -> None:
    for p in (path, Path(str(path) + "-journal"), Path(str(path) + "-wal")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


# --- list and verify ---------------------------------------------------------------------


def _read_manifest(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    mpath = path.with_name(path.name + ".json")
    try:
        data = json.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "no manifest (an interrupted or foreign backup)"
    except (OSError, ValueError) as err:
        return None, f"manifest unreadable: {err}"
    if not isinstance(data, dict) or data.get("kind") != "bastion-backup":
        return None, "manifest is not a bastion backup manifest"
    return data, None


def verify_backup(path: Path, *, deep: bool = True) -> BackupInfo:
    """Check one backup file against its manifest. ``deep`` adds SHA-256, ``quick_check``,
    schema fingerprint and row counts (reads the whole file); read-only either way."""
    path = Path(path).absolute()
    manifest, problem = _read_manifest(path)
    name, created = _name_and_time(path, manifest)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return BackupInfo(path, name, created, 0, False, "file missing", manifest, deep)
    if manifest is not None and problem is None:
        problem = _check_against(path, manifest, size, deep=deep)
    return BackupInfo(path, name, created, size, problem is None, problem, manifest, deep)


def _check_against(path: Path, manifest: Mapping[str, Any], size: int, *, deep: bool) -> str | None:
    if size != manifest.get("size_bytes"):
        return f"size {size} != manifest {manifest.get('size_bytes')} (truncated or replaced)"
    if not deep:
        return None
    if _sha256(path) != manifest.get("sha256"):
        return "SHA-256 does not match the manifest (the file was modified or damaged)"
    try:
        facts = inspect_file(path)
    except StoreError as err:
        return f"unreadable: {err.message}"
    if not facts.ok:
        return f"quick_check failed: {'; '.join(facts.quick_check[:3])}"
    if facts.schema_fingerprint != manifest.get("schema_fingerprint"):
        return "schema fingerprint does not match the manifest"
    if facts.row_counts != manifest.get("row_counts"):
        return "row counts do not match the manifest"
    return None


def _name_and_time(path: Path, manifest: Mapping[str, Any] | None) -> tuple[str, dt.datetime]:
    if manifest is not None:
        try:
            return str(manifest["db_name"]), dt.datetime.fromisoformat(manifest["created_at"])
        except (KeyError, ValueError):
            pass
    stem = path.name.removesuffix(".db")
    name, _, stamp = stem.rpartition("-")
    created = _parse_stamp(stamp)
    if created is None:
        created = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
        name = stem
    return name, created


def list_backups(
    backups_dir: Path, db_name: str | None = None, *, deep: bool = False
) -> list[BackupInfo]:
    """Backups in ``backups_dir`` (optionally of one database), newest first. Read-only."""
    if not backups_dir.is_dir():
        return []
    found = []
    for path in backups_dir.glob("*.db"):
        if path.name.startswith("."):
            continue  # an in-progress temp file
        info = verify_backup(path, deep=deep)
        if db_name is None or info.db_name == db_name:
            found.append(info)
    found.sort(key=lambda i: i.created_at, reverse=True)
    return found


def newest_verified_backup(backups_dir: Path, db_name: str) -> BackupInfo | None:
    """The newest backup of ``db_name`` that passes a deep verification, or None."""
    for info in list_backups(backups_dir, db_name):
        if not info.verified:
            continue
        deep = verify_backup(info.path, deep=True)
        if deep.verified:
            return deep
        log.warning("backup %s failed verification: %s", info.path, deep.problem)
    return None


# --- rotation ----------------------------------------------------------------------------


def plan_rotation(
    backups: Iterable[BackupInfo],
    *,
    keep_last: int,
    keep_daily: int,
    keep_weekly: int,
    now: dt.datetime,
) -> tuple[list[BackupInfo], list[BackupInfo]]:
    """Pure: which backups to keep and which to delete, as ``(keep, delete)``.

    Kept: the ``keep_last`` newest verified ones, the newest verified one of each of the last
    ``keep_daily`` days and of each of the last ``keep_weekly`` ISO weeks. A backup is
    deleted only when a newer verified backup exists, so a run of failed backups never
    removes the last good one.
    """
    ordered = sorted(backups, key=lambda b: b.created_at, reverse=True)
    verified = [b for b in ordered if b.verified]
    keep: set[Path] = {b.path for b in verified[:keep_last]}
    seen_days: set[dt.date] = set()
    seen_weeks: set[tuple[int, int]] = set()
    for b in verified:
        day = b.created_at.date()
        if (now.date() - day).days < keep_daily and day not in seen_days:
            seen_days.add(day)
            keep.add(b.path)
        week = b.created_at.isocalendar()[:2]
        if (now - b.created_at).days < 7 * keep_weekly and week not in seen_weeks:
            seen_weeks.add(week)
            keep.add(b.path)
    newest_verified = verified[0].created_at if verified else None
    delete = [
        b
        for b in ordered
        if b.path not in keep and newest_verified is not None and b.created_at < newest_verified
    ]
    kept = [b for b in ordered if b not in delete]
    return kept, delete


def rotate_backups(
    backups_dir: Path, db_name: str, policy: BackupConfig, *, now: dt.datetime | None = None
) -> list[Path]:
    """DESTRUCTIVE: delete the backups of ``db_name`` that :func:`plan_rotation` drops.

    Returns the deleted ``.db`` paths (their manifests go with them).
    """
    _, delete = plan_rotation(
        list_backups(backups_dir, db_name),
        keep_last=policy.keep_last,
        keep_daily=policy.keep_daily,
        keep_weekly=policy.keep_weekly,
        now=now or dt.datetime.now(dt.UTC),
    )
    removed = []
    # Temp files of backups killed mid-copy (SIGKILL, power loss): never a usable backup.
    cutoff = time.time() - 3600
    for stale in backups_dir.glob(f".{db_name}-*.db.tmp"):
        with contextlib.suppress(FileNotFoundError):
            if stale.stat().st_mtime < cutoff:
                stale.unlink()
    for info in delete:
        for p in (info.path.with_name(info.path.name + ".json"), info.path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        removed.append(info.path)
    if removed:
        fsync_dir(backups_dir)
    return removed


# --- restore -----------------------------------------------------------------------------


def move_to_quarantine(target: Path, qdir: Path) -> list[Path]:
    """Move ``target`` and its ``-wal``/``-shm`` into ``qdir`` together; return the new paths.

    The companions go first: a ``-wal`` left next to a different database file would be
    replayed into it. The files are moved, never deleted (the WAL holds committed data).
    """
    ensure_private_dir(qdir)
    moved = []
    for suffix in (*COMPANIONS, ""):
        src = Path(str(target) + suffix)
        if src.exists():
            dst = qdir / src.name
            os.replace(src, dst)
            moved.append(dst)
    fsync_dir(qdir)
    fsync_dir(target.parent)
    return moved


def place_file(source: Path, target: Path) -> None:
    """Copy ``source`` to a temp file next to ``target``, fsync, rename over ``target``."""
    tmp = target.with_name(f".{target.name}.restore.tmp")
    shutil.copyfile(source, tmp)
    atomic_replace(tmp, target)


def restore_backup(
    backup: Path,
    target: Path,
    quarantine_root: Path,
    *,
    db_name: str | None = None,
    now: dt.datetime | None = None,
) -> RestoreResult:
    """DESTRUCTIVE (moves the live database aside): put a verified ``backup`` at ``target``.

    ``target`` must not be open in this process. The backup is verified deeply first; a
    damaged one raises ``RestoreRefused`` with the reason and nothing is touched. The old
    database, ``-wal`` and ``-shm`` end up in ``quarantine_root/<utc>-restore/``.
    """
    backup = Path(backup).absolute()
    info = verify_backup(backup, deep=True)
    if not info.verified:
        raise RestoreRefused(
            f"backup {backup} is not usable: {info.problem}; the live database was not touched",
            backup=str(backup),
            problem=info.problem,
        )
    if db_name is not None and info.db_name != db_name:
        raise RestoreRefused(
            f"backup {backup.name} is of database {info.db_name!r}, not {db_name!r}",
            hint="Pick a backup of this database (`bastion db backups`).",
        )
    replaced = target.stat().st_size if target.exists() else 0
    qdir = quarantine_root / f"{utc_stamp(now)}-restore"
    try:
        # Copy the backup next to the target before moving anything: if the disk is full
        # we fail here with the live database still in place.
        tmp = target.with_name(f".{target.name}.restore.tmp")
        shutil.copyfile(backup, tmp)
        quarantined = move_to_quarantine(target, qdir)
        atomic_replace(tmp, target)
    except OSError as err:
        raise StoreIOError(
            f"restore of {backup} into {target} failed: {err.strerror or err}", path=str(target)
        ) from err
    atomic_write(
        qdir / "restore.json",
        json.dumps(
            {
                "restored_from": str(backup),
                "restored_at": dt.datetime.now(dt.UTC).isoformat(),
                "target": str(target),
                "quarantined": [str(p) for p in quarantined],
            },
            indent=2,
        )
        + "\n",
    )
    rows = dict((info.manifest or {}).get("row_counts") or {})
    return RestoreResult(backup, target, qdir, quarantined, replaced, rows)


# --- scheduling --------------------------------------------------------------------------


def _status_path(backups_dir: Path, db_name: str) -> Path:
    return backups_dir / f".{db_name}.status.json"


def backup_status(backups_dir: Path, db_name: str) -> dict[str, Any] | None:
    """The last scheduled attempt (ok or failed) as written by :func:`run_scheduled_backup`."""
    try:
        data = json.loads(_status_path(backups_dir, db_name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_scheduled_backup(
    home_or_db: Any,
    cfg: Config,
    *,
    on_event: EventSink | None = None,
    force: bool = False,
    now: dt.datetime | None = None,
) -> BackupResult | None:
    """One tick of the daemon's backup schedule: back up if anything changed, then rotate.

    ``home_or_db`` is a ``Database`` or anything with a ``.db`` (the app's ``Home``). Returns
    None when nothing changed since the newest backup (compared by WAL position, see
    :class:`SourceState`). A failure emits "backup.failed", is recorded in the status file
    that ``bastion db backups`` and ``doctor`` show, and is raised.
    """
    db: Database = getattr(home_or_db, "db", home_or_db)
    backups_dir = cfg.backups_dir
    if not force:
        current = read_source_state(db.path)
        for info in list_backups(backups_dir, db.name):
            if not info.verified or info.manifest is None:
                continue
            try:
                last = SourceState.from_dict(info.manifest["source_state"])
            except (KeyError, TypeError):
                break
            if current.same_data_as(last):
                return None
            break
    status_path = _status_path(backups_dir, db.name)
    try:
        result = create_backup(db, backups_dir, now=now)
        removed = rotate_backups(backups_dir, db.name, cfg.backup, now=now)
    except StoreError as err:
        try:
            ensure_private_dir(backups_dir)
            atomic_write(
                status_path,
                json.dumps(
                    {"ok": False, "at": dt.datetime.now(dt.UTC).isoformat(), "error": err.to_dict()}
                ),
            )
        except OSError:
            log.exception("cannot record the failed backup in %s", status_path)
        if on_event:
            on_event("backup.failed", db.name, {"error": err.to_dict()})
        raise
    atomic_write(
        status_path,
        json.dumps(
            {"ok": True, "at": dt.datetime.now(dt.UTC).isoformat(), "backup": str(result.path)}
        ),
    )
    if on_event:
        on_event(
            "backup.created",
            db.name,
            {
                "path": str(result.path),
                "size_bytes": result.manifest["size_bytes"],
                "rotated": [str(p) for p in removed],
            },
        )
    return result
