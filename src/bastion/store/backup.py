"""Online backups: create, verify, list, rotate and restore SQLite backup files.

A backup is a pair in ``backups/``: ``<db>-<utc>.db`` and its manifest ``<db>-<utc>.db.json``.

Creating one (:func:`create_backup`) never stops writers: one snapshot of the database is
copied (see :mod:`bastion.store._snapshot_copy` for how) to a temporary file in ``backups/``,
in rollback-journal mode (a backup must be one self-contained file, with no ``-wal`` to lose),
fsynced, verified (``quick_check``, page count, schema fingerprint against the source
snapshot, SHA-256), and only then renamed into place, followed by its manifest. A crash at any
point leaves either no backup or a complete one; a ``.db`` without a manifest is listed as
unverified and never used for a restore.

This module never opens (and so never closes) the live database file or its ``-shm``: closing
any descriptor of a file drops every POSIX lock the process holds on it, SQLite's included.

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
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw

from bastion.__about__ import __version__
from bastion._fs import atomic_replace, atomic_write, copy_private, ensure_private_dir, fsync_dir
from bastion.errors import (
    BackupError,
    DatabaseKeyMissing,
    DatabaseKeyWrong,
    DatabaseNotEncrypted,
    RestoreRefused,
    StoreError,
    StoreIOError,
)
from bastion.store._snapshot_copy import (
    FileFacts,
    FollowingSha256,
    ProgressCallback,
    Sha256Thread,
    SourceState,
    inspect_file,
    read_source_state,
    schema_fingerprint,
    take_copy,
    unlink_quietly,
)
from bastion.store.crypt.cipher import ALGORITHM
from bastion.store.crypt.key import DatabaseKey
from bastion.store.dialect import require_sqlite

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
    "backup_key_id",
    "check_backup_key",
    "backup_status",
    "create_backup",
    "inspect_file",
    "list_backups",
    "move_to_quarantine",
    "newest_verified_backup",
    "plan_rotation",
    "read_manifest",
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
#: Pages per backup step (backup API) or chunk (file copy): progress moves, and the per-step
#: overhead is noise (4096 x 4 KiB = 16 MiB).
DEFAULT_STEP_PAGES = 4096
COMPANIONS = ("-wal", "-shm")

#: ``fn(kind, subject, data)``: where "backup.created" and friends go (events table, logs).
EventSink = Callable[[str, str, Mapping[str, Any]], None]


# --- values ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class BackupResult:
    """A backup just written: its file, manifest and how long it took."""

    path: Path
    manifest_path: Path
    manifest: dict[str, Any]
    duration_s: float
    #: Until the copy was durable on disk (the rest is verification and the manifest).
    copy_s: float = 0.0


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
    #: Not verified because of the key, not damage: the backup is encrypted with another key
    #: (or none was given), or it is plaintext and a key was given. Says which, in words.
    key_problem: str | None = None

    def age_s(self, now: dt.datetime | None = None) -> float:
        """Seconds since the backup was taken (as of ``now``)."""
        now = now or dt.datetime.now(dt.UTC)
        return (now - self.created_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        """The backup's facts as JSON-ready data."""
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
            "key_id": backup_key_id(self.manifest),
            "key_problem": self.key_problem,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class RestoreResult:
    """What a restore did: the backup used, the files quarantined, the rows restored."""

    backup: Path
    target: Path
    quarantine_dir: Path
    quarantined: list[Path]
    replaced_bytes: int
    restored_rows: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """The restore as JSON-ready data."""
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
    require_sqlite(db, "backups")  # PostgreSQL: pg_dump, named in the refusal
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
    copy = take_copy(db, tmp, vacuum=vacuum, step_pages=step_pages, progress=progress, vfs=vfs_name)
    copied_s = time.monotonic() - started

    try:
        # The hash is still running (the file copy hashes behind itself; the other methods
        # hash now): the checks below run meanwhile on the other core.
        sha: FollowingSha256 | Sha256Thread = copy.hash or Sha256Thread(tmp)
        key: DatabaseKey | None = getattr(db, "_key", None)
        try:
            # mmap is safe here: the temp file is ours, complete, fsynced, and never truncated.
            facts = inspect_file(tmp, mmap=True, key=key)
        except BaseException:
            sha.abandon()
            raise
        digest = sha.result(facts.size_bytes)
        problems = []
        if not facts.ok:
            problems.append(f"quick_check: {'; '.join(facts.quick_check[:5])}")
        if facts.schema_fingerprint != copy.source_fp:
            problems.append("schema fingerprint differs from the source snapshot")
        if not vacuum and facts.page_count != copy.source_pages:
            problems.append(f"page count {facts.page_count} != source {copy.source_pages}")
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
            "source_state": dataclasses.asdict(copy.state),
            "vacuum": vacuum,
            "method": copy.method,
            # Which key opens it (its fingerprint, never the key): a restore names the key a
            # backup needs, and a backup made before `db rekey` is told from a damaged one.
            "encryption": (None if key is None else {"cipher": ALGORITHM, "key_id": key.key_id}),
            "quick_check": "ok",
            "sqlite_version": apsw.sqlite_lib_version(),
            "bastion_version": __version__,
        }
        manifest_path = final.with_name(final.name + ".json")
        # Data first, manifest second: a crash between leaves an unverified .db, never a
        # manifest that points at nothing.
        atomic_replace(tmp, final)
        manifest["copy_s"] = round(copied_s, 3)
        manifest["duration_s"] = round(time.monotonic() - started, 3)
        atomic_write(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    except OSError as err:
        unlink_quietly(tmp)
        raise StoreIOError(
            f"cannot write backup {final}: {err.strerror or err}", path=str(final)
        ) from err
    except BaseException:
        unlink_quietly(tmp)
        raise
    return BackupResult(final, manifest_path, manifest, time.monotonic() - started, copied_s)


# --- list and verify ---------------------------------------------------------------------


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of backup ``path`` (None when missing or not a bastion manifest)."""
    return _read_manifest(path)[0]


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


def verify_backup(path: Path, *, deep: bool = True, key: DatabaseKey | None = None) -> BackupInfo:
    """Check one backup file against its manifest. ``deep`` adds SHA-256, ``quick_check``,
    schema fingerprint and row counts (reads the whole file); read-only either way.

    An encrypted backup is read with ``key``; one made with another key (or read without
    one) is not verified and its ``problem`` says which key it needs."""
    path = Path(path).absolute()
    manifest, problem = _read_manifest(path)
    name, created = _name_and_time(path, manifest)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return BackupInfo(path, name, created, 0, False, "file missing", manifest, deep)
    key_problem = None
    if manifest is not None and problem is None:
        key_problem = _key_problem(manifest, key)
        problem = key_problem or _check_against(path, manifest, size, deep=deep, key=key)
    return BackupInfo(
        path, name, created, size, problem is None, problem, manifest, deep, key_problem
    )


def backup_key_id(manifest: Mapping[str, Any] | None) -> str | None:
    """The key id an encrypted backup was made with (None: a plaintext backup)."""
    enc = (manifest or {}).get("encryption")
    return str(enc.get("key_id")) if isinstance(enc, dict) and enc.get("key_id") else None


def _key_problem(manifest: Mapping[str, Any], key: DatabaseKey | None) -> str | None:
    needed = backup_key_id(manifest)
    if needed is None:
        return None if key is None else "plaintext (made without encryption); a key was given"
    if key is None:
        return f"encrypted with key id {needed}; no database key was given"
    if needed != key.key_id:
        return f"encrypted with key id {needed}, not with the key given (key id {key.key_id})"
    return None


def _check_against(
    path: Path, manifest: Mapping[str, Any], size: int, *, deep: bool, key: DatabaseKey | None
) -> str | None:
    if size != manifest.get("size_bytes"):
        return f"size {size} != manifest {manifest.get('size_bytes')} (truncated or replaced)"
    if not deep:
        return None
    sha = Sha256Thread(path)  # hashing and checking at once, on both cores
    try:
        facts = inspect_file(path, key=key)
    except StoreError as err:
        if sha.result() != manifest.get("sha256"):
            return "SHA-256 does not match the manifest (the file was modified or damaged)"
        return f"unreadable: {err.message}"
    if sha.result() != manifest.get("sha256"):
        return "SHA-256 does not match the manifest (the file was modified or damaged)"
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
    backups_dir: Path,
    db_name: str | None = None,
    *,
    deep: bool = False,
    key: DatabaseKey | None = None,
) -> list[BackupInfo]:
    """Backups in ``backups_dir`` (optionally of one database), newest first. Read-only.
    ``key`` reads encrypted ones (see :func:`verify_backup`)."""
    if not backups_dir.is_dir():
        return []
    found = []
    for path in backups_dir.glob("*.db"):
        if path.name.startswith("."):
            continue  # an in-progress temp file
        info = verify_backup(path, deep=deep, key=key)
        if db_name is None or info.db_name == db_name:
            found.append(info)
    found.sort(key=lambda i: i.created_at, reverse=True)
    return found


def newest_verified_backup(
    backups_dir: Path, db_name: str, *, key: DatabaseKey | None = None
) -> BackupInfo | None:
    """The newest backup of ``db_name`` that passes a deep verification with ``key`` (a
    backup made with another key, or plaintext when a key is given, is passed over), or
    None."""
    for info in list_backups(backups_dir, db_name, key=key):
        if not info.verified:
            continue
        deep = verify_backup(info.path, deep=True, key=key)
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
    backups_dir: Path,
    db_name: str,
    policy: BackupConfig,
    *,
    now: dt.datetime | None = None,
    key: DatabaseKey | None = None,
) -> list[Path]:
    """DESTRUCTIVE: delete the backups of ``db_name`` that :func:`plan_rotation` drops.

    Returns the deleted ``.db`` paths (their manifests go with them). With ``key`` (an
    encrypted database), backups only another key opens count as unverified.
    """
    _, delete = plan_rotation(
        list_backups(backups_dir, db_name, key=key),
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
        if info.manifest is None and _younger_than(info.path, cutoff):
            # Perhaps another process's backup between its data and its manifest (the
            # daemon's schedule and `db backup` rotate the same folder): deleting it would
            # leave that manifest pointing at nothing. Left for a later rotation.
            continue
        for p in (info.path.with_name(info.path.name + ".json"), info.path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        removed.append(info.path)
    if removed:
        fsync_dir(backups_dir)
    return removed


def _younger_than(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime >= cutoff
    except FileNotFoundError:
        return False


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


def restore_backup(
    backup: Path,
    target: Path,
    quarantine_root: Path,
    *,
    db_name: str | None = None,
    now: dt.datetime | None = None,
    key: DatabaseKey | None = None,
) -> RestoreResult:
    """DESTRUCTIVE (moves the live database aside): put a verified ``backup`` at ``target``.

    ``target`` must not be open in this process. The backup is verified deeply first; a
    damaged one raises ``RestoreRefused`` with the reason and nothing is touched. The old
    database, ``-wal`` and ``-shm`` end up in ``quarantine_root/<utc>-restore/``.

    ``key`` is the database's key: an encrypted backup made with another key (or read
    without one) raises ``DatabaseKeyWrong``/``DatabaseKeyMissing`` naming the key id it
    needs, and a plaintext backup given a key ``DatabaseNotEncrypted``; nothing is touched.
    """
    backup = Path(backup).absolute()
    manifest, _problem = _read_manifest(backup)
    if manifest is not None:
        check_backup_key(backup, manifest, key)
    info = verify_backup(backup, deep=True, key=key)
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
    # Nothing moves until the copy of the backup sits beside the live file: a full disk, a
    # read-only mount or a directory mode stops the restore here, with the live database
    # where and as it was (see store/_swap.py).
    from bastion.store._swap import preflight, remove_quietly, replacement_path, swap_in

    preflight(
        target,
        quarantine_root,
        needs={"the backup's copy beside the live file": info.size_bytes},
        what=f"restoring {target.name}",
    )
    tmp = replacement_path(target, "restore")
    made_qdir = not qdir.exists()
    try:
        remove_quietly(tmp)  # left by a restore that was killed: ours, never in place
        copy_private(backup, tmp)
        ensure_private_dir(qdir)
        quarantined = swap_in(tmp, target, qdir)
    except OSError as err:
        remove_quietly(tmp)
        if made_qdir:
            with contextlib.suppress(OSError):
                qdir.rmdir()
        from bastion.store._diagnose import io_error

        raise io_error(
            target,
            err_no=err.errno,
            what=f"restoring {backup.name} (the live database was not touched)",
            text=err.strerror,
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


def check_backup_key(backup: Path, manifest: Mapping[str, Any], key: DatabaseKey | None) -> None:
    """Raise the typed key error for a backup that ``key`` cannot open (see
    :func:`restore_backup`): ``DatabaseKeyMissing``/``DatabaseKeyWrong`` naming the key id it
    was made with, ``DatabaseNotEncrypted`` for a plaintext backup given a key."""
    needed = backup_key_id(manifest)
    if needed is None and key is not None:
        raise DatabaseNotEncrypted(
            f"backup {backup.name} is plaintext (made before the database was encrypted) and "
            "encryption is required; the live database was not touched",
            hint='Restore it with store.encryption = "off", then run `bastion db encrypt`.',
            backup=str(backup),
        )
    if needed is not None and key is None:
        raise DatabaseKeyMissing(
            f"backup {backup.name} is encrypted (key id {needed}) and no database key was "
            "given; the live database was not touched",
            backup=str(backup),
            key_id=needed,
        )
    if needed is not None and key is not None and needed != key.key_id:
        raise DatabaseKeyWrong(
            f"backup {backup.name} was encrypted with key id {needed}; the key from "
            f"{key.source} is key id {key.key_id}. The live database was not touched.",
            hint="Provide the key it was made with (a backup taken before `bastion db rekey` "
            "needs the key of that time).",
            backup=str(backup),
            key_id=needed,
        )


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
    backups_dir: Path | None = None,
) -> BackupResult | None:
    """One tick of the daemon's backup schedule: back up if anything changed, then rotate.

    ``home_or_db`` is a ``Database`` or anything with a ``.db`` (the app's ``Home``). Returns
    None when nothing changed since the newest backup (compared by WAL position, see
    :class:`SourceState`). A failure emits "backup.failed", is recorded in the status file
    that ``bastion db backups`` and ``doctor`` show, and is raised. ``backups_dir`` replaces
    ``cfg.backups_dir`` (an application keeping several databases' backups apart, e.g.
    ``backups/<name>/``); rotation follows ``cfg.backup`` either way.
    """
    db: Database = getattr(home_or_db, "db", home_or_db)
    backups_dir = cfg.backups_dir if backups_dir is None else backups_dir
    if not force:
        current = read_source_state(db.path)
        for info in list_backups(backups_dir, db.name, key=db._key):
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
        removed = rotate_backups(backups_dir, db.name, cfg.backup, now=now, key=db._key)
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
