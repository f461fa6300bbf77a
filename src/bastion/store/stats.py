"""Statistics of one database: rows and bytes per table and index (``dbstat``), free pages,
WAL size, last backup and last check. Read-only, except :func:`record_check`, which writes
the result of an integrity check to a small JSON file (never into the database itself).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion._fs import atomic_write, ensure_private_dir
from bastion.errors import StoreCorrupt, StoreIOError

if TYPE_CHECKING:
    from bastion.config import Config
    from bastion.store.engine import Database, ReadTx
    from bastion.store.fts import Fts5Check
    from bastion.store.tx import Row

__all__ = [
    "ObjectStats",
    "check_database",
    "check_rows",
    "db_stats",
    "foreign_key_rows",
    "fts5_after",
    "last_check",
    "record_check",
    "run_scheduled_check",
]

log = logging.getLogger("bastion.store")


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectStats:
    """Rows, bytes and pages of one table or index (``dbstat``)."""

    name: str
    kind: str  # "table" or "index"
    table: str
    rows: int | None
    bytes: int
    pages: int


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def db_stats(
    db: Database, *, backups_dir: Path | None = None, run_dir: Path | None = None
) -> dict[str, Any]:
    """Everything ``bastion db stats`` shows, as JSON-ready data."""

    def read(tx: ReadTx) -> dict[str, Any]:
        objects = tx.query(
            "SELECT name, type, tbl_name FROM sqlite_schema "
            "WHERE type IN ('table', 'index') ORDER BY tbl_name, type DESC, name"
        )
        sizes = {
            str(name): (int(pages), int(size or 0))
            for name, pages, size in tx.query(
                "SELECT name, count(*), sum(pgsize) FROM dbstat GROUP BY name"
            )
        }
        items = []
        for name, kind, table in objects:
            rows = None
            if kind == "table":
                try:
                    rows = int(tx.scalar(f"SELECT count(*) FROM {_q(str(name))}"))
                except Exception:  # a virtual table whose module is not loaded
                    rows = None
            pages, size = sizes.get(str(name), (0, 0))
            items.append(ObjectStats(str(name), str(kind), str(table), rows, size, pages))
        return {
            "objects": items,
            "page_size": int(tx.scalar("PRAGMA page_size")),
            "page_count": int(tx.scalar("PRAGMA page_count")),
            "freelist_count": int(tx.scalar("PRAGMA freelist_count")),
            "auto_vacuum": ["none", "full", "incremental"][int(tx.scalar("PRAGMA auto_vacuum"))],
        }

    data = db.read(read)
    objects: list[ObjectStats] = data.pop("objects")
    sizes = db.file_sizes()
    out: dict[str, Any] = {
        "database": str(db.path),
        "file_bytes": sizes["db"],
        "wal_bytes": sizes["wal"],
        **data,
        "free_bytes": data["freelist_count"] * data["page_size"],
        "tables": {
            o.name: {"rows": o.rows, "bytes": o.bytes, "pages": o.pages}
            for o in objects
            if o.kind == "table"
        },
        "indexes": {
            o.name: {"table": o.table, "bytes": o.bytes, "pages": o.pages}
            for o in objects
            if o.kind == "index"
        },
        "last_backup": None,
        "last_scheduled_backup": None,
        "last_check": None,
    }
    if backups_dir is not None:
        # Here, not at the top: the system routes import this module, and the backup stack
        # (snapshot copy, hashing) is not for the daemon's start to load (issue 22 §7).
        from bastion.store.backup import backup_status, list_backups

        backups = list_backups(backups_dir, db.name, key=db._key)
        if backups:
            out["last_backup"] = backups[0].to_dict()
        out["last_scheduled_backup"] = backup_status(backups_dir, db.name)
    if run_dir is not None:
        out["last_check"] = last_check(run_dir, db.name)
    return out


def check_rows(tx: ReadTx, pragma: str) -> list[str]:
    """The rows of ``PRAGMA quick_check``/``integrity_check`` on a pooled reader, read right.

    Both pragmas run FTS5's own integrity check, which reads the index structure the
    connection cached the last time it used the table (SQLite 3.54), not the one in this
    transaction's snapshot: after other connections merged segments since (the capture writes
    ``logs_fts`` all the time), a long-lived reader reported "fts5: corruption found reading
    blob ..." on a healthy database. Opening a cursor on each FTS5 table first makes FTS5
    compare the data version and reload its structure; one row of a full scan is enough.

    An FTS5 table that FTS5 cannot open (its ``_config`` damaged) makes the pragma raise
    instead of answering: that table is a finding and every other table is checked by name
    (``PRAGMA integrity_check(t)``; the whole-file page accounting is then left out).
    """
    if pragma not in ("quick_check", "integrity_check"):
        raise ValueError(f"not an integrity pragma: {pragma!r}")
    import apsw

    from bastion.store.fts import fts5_tables, is_fts5_error

    broken: list[str] = []
    findings: list[str] = []
    for table in fts5_tables(tx):
        try:
            tx.query(f"SELECT rowid FROM {table.quoted()} LIMIT 1")
        except apsw.Error as err:
            if not is_fts5_error(err):
                # The scan read the external content table, which the declaration does not
                # fit (dropped, a column renamed, a view without a rowid): the index itself
                # was opened (FTS5 reloads its structure when the cursor opens), and the
                # pragma checks it without reading the content.
                if isinstance(err, apsw.SQLError):
                    continue
                raise
            # FTS5 cannot open the table at all (a damaged ``_config``: "invalid fts5 file
            # format ... run 'rebuild'"): the pragma would raise the same error instead of
            # answering, so this table is a finding and the others are checked one by one.
            broken.append(table.name)
            findings.append(f'fts5: table "{table.name}" cannot be opened: {err}')
    if not broken:
        return [str(r[0]) for r in tx.query(f"PRAGMA {pragma}")]
    rows: list[str] = []
    for (name,) in tx.query("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name"):
        if name in broken:
            continue
        quoted = '"' + str(name).replace('"', '""') + '"'
        try:
            rows += [str(r[0]) for r in tx.query(f"PRAGMA {pragma}({quoted})")]
        except apsw.Error as err:
            if not is_fts5_error(err):
                raise
            rows.append(f'fts5: table "{name}" cannot be checked: {err}')
    return findings + [row for row in rows if row != "ok"]


def foreign_key_rows(tx: ReadTx) -> list[Row]:
    """``PRAGMA foreign_key_check``'s rows (table, rowid, parent, fkid) on a pooled reader,
    against the current schema.

    The pragma is compiled from the schema the connection cached, and (unlike a SELECT) does
    not check first that it is current: a reader that cached the schema before a migration
    declared a reference found nothing to check there and answered "no violation". Reading
    the catalog first makes the connection load the current schema in this snapshot.
    """
    tx.query("SELECT count(*) FROM sqlite_schema")
    return tx.query("PRAGMA foreign_key_check")


def fts5_after(db: Database, integrity: list[str], *, compare: bool = True) -> Fts5Check:
    """The FTS5 checks ``integrity_check`` leaves out (:func:`bastion.store.fts.check_fts5`),
    after its rows ``integrity``: the tables those rows already report damaged are not
    checked again (it would only repeat them, holding the write lock for nothing)."""
    from bastion.store.fts import check_fts5, fts5_table_named, is_fts5_finding

    broken = frozenset(
        name
        for row in integrity
        if is_fts5_finding(row) and (name := fts5_table_named(row)) is not None
    )
    return check_fts5(db, broken=broken, compare=compare)


def check_database(db: Database, *, full: bool = True) -> dict[str, Any]:
    """``integrity_check`` (or ``quick_check``) plus ``foreign_key_check``, on a reader, plus
    what those leave out of FTS5 indexes (:func:`bastion.store.fts.check_fts5`): leaf pages
    without an ``_idx`` entry (both checks: cheap), an index that does not match its content
    table (the full check only: it reads and copies every indexed row).

    ``repair`` says what mends what was found: ``"reindex"`` when every finding is about FTS5
    indexes alone (rebuilt from their content tables by ``bastion db reindex``), else
    ``"recover"`` (quarantine and restore a backup); None when all is well."""
    pragma = "integrity_check" if full else "quick_check"

    def read(tx: ReadTx) -> dict[str, Any]:
        integrity = check_rows(tx, pragma)
        fk = [
            {"table": str(t), "rowid": rowid, "parent": str(p), "fkid": int(i)}
            for t, rowid, p, i in foreign_key_rows(tx)
        ]
        return {"integrity": integrity, "fk": fk}

    found = db.read(read)
    integrity: list[str] = found["integrity"]
    fk: list[dict[str, Any]] = found["fk"]
    out: dict[str, Any] = {"check": pragma}
    from bastion.store.fts import is_fts5_finding

    fts = fts5_after(db, integrity, compare=full)
    if fts.findings:
        integrity = [*(row for row in integrity if row != "ok"), *fts.findings]
    if full:
        out["fts5"] = {
            "tables": list(fts.tables),
            "compared_with_content": fts.compared,
            **({"skipped": fts.skipped} if fts.skipped else {}),
        }
    integrity_ok = integrity == ["ok"]
    ok = integrity_ok and not fk
    repair = None
    if not ok:
        repair = "reindex" if not fk and all(map(is_fts5_finding, integrity)) else "recover"
    out.update(
        {
            "integrity": integrity[:100],
            "integrity_ok": integrity_ok,
            "foreign_key_violations": fk[:100],
            "foreign_key_violation_count": len(fk),
            "ok": ok,
            "repair": repair,
            "checked_at": dt.datetime.now(dt.UTC).isoformat(),
        }
    )
    return out


def record_check(run_dir: Path, db_name: str, result: dict[str, Any]) -> None:
    """Remember the last check's outcome for ``db stats`` and ``doctor``."""
    ensure_private_dir(run_dir)
    atomic_write(run_dir / f"check-{db_name}.json", json.dumps(result, sort_keys=True) + "\n")


def last_check(run_dir: Path, db_name: str) -> dict[str, Any] | None:
    """The last recorded ``db check`` of ``db_name`` (``run/check-NAME.json``), or None."""
    try:
        data = json.loads((run_dir / f"check-{db_name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_scheduled_check(db: Database, cfg: Config, *, full: bool = True) -> dict[str, Any]:
    """One tick of a scheduled integrity check (for the daemon's scheduler): run it on a
    reader (writers keep going) and record the outcome where ``db stats``/``doctor`` read it.
    A failing check is returned, not raised: the caller decides to alert or recover.

    Classified by cause: damage (rows from the check, ``SQLITE_CORRUPT``) is ``ok: False``;
    a disk that refused the check (full, read-only, failing) is ``ok: None`` with
    ``inconclusive`` and the error -- nothing is known about the data, so nothing may be
    done to it. A result that cannot be recorded (full disk) is still returned."""
    try:
        result = check_database(db, full=full)
    except StoreCorrupt as err:
        result = {
            "check": "integrity_check" if full else "quick_check",
            "integrity": [err.message],
            "integrity_ok": False,
            "foreign_key_violations": [],
            "foreign_key_violation_count": 0,
            "ok": False,
            "checked_at": dt.datetime.now(dt.UTC).isoformat(),
        }
    except StoreIOError as err:
        result = {
            "check": "integrity_check" if full else "quick_check",
            "ok": None,
            "inconclusive": True,
            "error": err.to_dict(),
            "checked_at": dt.datetime.now(dt.UTC).isoformat(),
        }
    try:
        record_check(cfg.run_dir, db.name, result)
    except OSError as err:
        log.warning("integrity check of %s not recorded: %s", db.name, err.strerror or err)
    return result
