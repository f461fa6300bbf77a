"""Corruption: detect at open, quarantine, restore the newest good backup, salvage, merge back.

:func:`open_check` (detect) lives in :mod:`bastion.store.open_check`, apart from all this:
every open runs it, and a sound file's check must not load the recovery stack (issue 22 §7).
Its names are re-exported here, where they were first.

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
import errno
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw

from bastion._fs import atomic_write, copy_private, ensure_private_dir
from bastion.errors import StoreError, StoreMissing
from bastion.store._diagnose import io_error
from bastion.store._errors import translate
from bastion.store._filenames import sqlite_uri_path
from bastion.store._swap import preflight, remove_quietly, replacement_path, swap_in
from bastion.store.backup import BackupInfo, EventSink, newest_verified_backup, utc_stamp
from bastion.store.crypt.cipher import connect
from bastion.store.crypt.key import DatabaseKey
from bastion.store.open_check import CheckKind, OpenCheck, open_check

if TYPE_CHECKING:
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
