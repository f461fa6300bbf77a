"""Translation of apsw exceptions into bastion's error tree.

This is the one place that knows apsw's exception classes and SQLite's extended result codes;
every other module in ``store/`` calls :func:`translate` in its ``except apsw.Error`` clause.
"""

from __future__ import annotations

import errno
import re

import apsw

from bastion.errors import (
    Conflict,
    ConstraintViolation,
    IndexCorrupt,
    NotADatabase,
    ReferenceViolation,
    StoreBusy,
    StoreCorrupt,
    StoreError,
    StoreIOError,
    StoreOpenError,
)

__all__ = ["foreign_key_error", "is_fts5_damage", "is_foreign_key_error", "translate"]

# SQLite extended result codes (sqlite3.h): SQLITE_CONSTRAINT | (n << 8).
_CONSTRAINT_UNIQUE = 2067
_CONSTRAINT_PRIMARYKEY = 1555
_CONSTRAINT_FOREIGNKEY = 787
_CONSTRAINT_NOTNULL = 1299
_CONSTRAINT_CHECK = 275

# Patterns as text: re caches them compiled on first use; compiling at import would cost
# every one-shot CLI read for errors it almost never meets.
_UNIQUE_COLUMNS = r"UNIQUE constraint failed: (?P<cols>.+)$"


def _system_errno(conn: apsw.Connection | None) -> int | None:
    """The errno behind the last I/O error SQLite met on ``conn`` (None when unknown)."""
    if conn is None:
        return None
    try:
        value = int(conn.system_errno)
    except (apsw.Error, AttributeError, TypeError, ValueError):
        return None
    return value or None


def _extended(err: BaseException) -> int:
    """SQLite's extended result code; 0 for an error raised by Python code run inside SQL (a
    function, a virtual table, a VFS), which apsw passes on as it was raised."""
    return int(getattr(err, "extendedresult", 0) or 0)


def _constraint_error(
    err: BaseException,
) -> type[Conflict] | type[ReferenceViolation] | type[ConstraintViolation]:
    """Which of bastion's errors ``err`` (an ``apsw.ConstraintError``) is. SQLite's extended
    code says which constraint failed; only an error without one (raised by Python code) is
    read by its words. SQLite's own words are not read: they name the constraint's columns
    or CHECK expression, which may hold "UNIQUE" or "FOREIGN KEY" themselves (a column
    ``UNIQUE_CODE``, ``CHECK (kind IN ('UNIQUE', ...))``)."""
    code = _extended(err)
    if code:
        if code in (_CONSTRAINT_UNIQUE, _CONSTRAINT_PRIMARYKEY):
            return Conflict
        return ReferenceViolation if code == _CONSTRAINT_FOREIGNKEY else ConstraintViolation
    text = str(err)
    if "UNIQUE" in text:
        return Conflict
    return ReferenceViolation if "FOREIGN KEY" in text else ConstraintViolation


def translate(
    err: BaseException,
    *,
    path: str | None = None,
    what: str | None = None,
    conn: apsw.Connection | None = None,
) -> StoreError:
    """Map an apsw error to the matching ``StoreError``; the caller raises it ``from err``.

    I/O conditions (disk full, read-only media, permissions, "unable to open", a -shm that
    could not be grown) become ``StoreIOError`` subclasses naming the cause, found from the
    errno SQLite saw on ``conn`` (when given) and from the filesystem; only
    ``SQLITE_CORRUPT``/``SQLITE_NOTADB`` are damage.
    """
    where = f" in {path}" if path else ""
    doing = f" while {what}" if what else ""
    text = str(err).strip()
    if isinstance(err, apsw.ConstraintError):
        kind = _constraint_error(err)
        if kind is Conflict:
            match = re.search(_UNIQUE_COLUMNS, text)
            columns = match.group("cols") if match else None
            return Conflict(
                f"conflict{doing}: {text}",
                hint=f"A row with the same {columns or 'key'} exists already; update it or use another value.",
                columns=columns,
            )
        if kind is ReferenceViolation:
            return ReferenceViolation(f"foreign key constraint failed{doing}: {text}")
        return ConstraintViolation(f"constraint failed{doing}: {text}")
    if isinstance(err, apsw.BusyError | apsw.LockedError):
        return StoreBusy(f"database{where} stayed locked past the busy timeout{doing}")
    if isinstance(err, apsw.NotADBError):
        return NotADatabase(
            f"{path or 'the file'} is not an SQLite database (or is encrypted or truncated)",
            path=path,
        )
    if is_fts5_damage(err):
        # FTS5 reporting its own index damaged (its pages, its structure record, its
        # configuration row): the indexed table is not implicated, and a rebuild mends it.
        return IndexCorrupt(f"full-text index{where} is damaged{doing}: {text}", path=path)
    if isinstance(err, apsw.CorruptError):
        return StoreCorrupt(f"database{where} is corrupt{doing}: {text}", path=path)
    if isinstance(
        err,
        apsw.FullError
        | apsw.IOError
        | apsw.ReadOnlyError
        | apsw.CantOpenError
        | apsw.PermissionsError,
    ):
        if path is None:
            return StoreIOError(f"I/O error{doing}: {text}")
        from bastion.store._diagnose import io_error

        err_no = _system_errno(conn)
        if isinstance(err, apsw.PermissionsError) and err_no is None:
            err_no = errno.EACCES
        return io_error(
            path,
            err_no=err_no,
            what=what,
            text=text,
            full=isinstance(err, apsw.FullError),
        )
    if isinstance(err, apsw.AuthError):
        return StoreOpenError(f"cannot open{where}: {text}", path=path)
    if isinstance(err, apsw.InterruptError):
        return StoreError(f"interrupted{doing}", recoverable=True)
    if isinstance(err, apsw.SQLError):
        return StoreError(
            f"SQL error{doing}: {text}",
            hint="The statement is invalid for this schema; check the migration state.",
        )
    return StoreError(f"database error{doing}{where}: {err}")


def is_fts5_damage(err: BaseException) -> bool:
    """FTS5 reporting damage to an index of its own: ``SQLITE_CORRUPT`` in its words
    ("fts5: corrupt structure record for table ...", "fts5: corruption found reading blob
    ..."), or a configuration it cannot read ("invalid fts5 file format ... run 'rebuild'").
    Never a query's own mistake ("fts5: syntax error near ...", an SQLError too)."""
    text = str(err)
    if isinstance(err, apsw.CorruptError):
        return "fts5" in text.lower()
    return isinstance(err, apsw.SQLError) and "invalid fts5 file format" in text


# A name: quoted three ways (a quoted name may hold a dot) or bare; the table's may follow
# its schema's and a dot.
_NAME = r"(?:\"[^\"]+\"|`[^`]+`|\[[^\]]+\]|\w+)"
_DML_TABLE = (
    r"(?is)^\s*(?:WITH\b.*?\)\s*)?(?P<verb>INSERT|REPLACE|UPDATE|DELETE)\b(?:\s+OR\s+\w+)?"
    rf"(?:\s+INTO|\s+FROM)?\s+(?:{_NAME}\s*\.\s*)?(?P<table>{_NAME})"
)


def is_foreign_key_error(err: BaseException) -> bool:
    return isinstance(err, apsw.ConstraintError) and _constraint_error(err) is ReferenceViolation


def foreign_key_error(conn: apsw.Connection, sql: str, err: BaseException) -> ReferenceViolation:
    """A ``ReferenceViolation`` naming the constraints the failed statement could have broken.

    SQLite's message is only "FOREIGN KEY constraint failed"; the statement's verb and table
    tell which constraints were in play: an INSERT/UPDATE of a child breaks one of the child's
    own foreign keys, a DELETE/UPDATE of a parent breaks a key that refers to it.
    """
    match = re.match(_DML_TABLE, sql)
    if match is None:
        return ReferenceViolation(f"foreign key constraint failed: {err}")
    verb = match.group("verb").upper()
    name = match.group("table")
    table = name[1:-1] if name[0] in ('"', "`", "[") else name  # the quotes off
    constraints: list[str] = []
    try:
        if verb in {"INSERT", "REPLACE", "UPDATE"}:
            for row in conn.execute("SELECT * FROM pragma_foreign_key_list(?)", (table,)):
                constraints.append(f"{table}.{row[3]} -> {row[2]}({row[4] or 'rowid'})")
        if verb in {"DELETE", "UPDATE", "REPLACE"}:
            tables = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")
            ]
            for child in tables:
                for row in conn.execute("SELECT * FROM pragma_foreign_key_list(?)", (child,)):
                    if str(row[2]).lower() == table.lower():
                        constraints.append(f"{child}.{row[3]} -> {table}({row[4] or 'rowid'})")
    except apsw.Error:
        constraints = []
    named = "; ".join(constraints) or "unknown constraint"
    action = (
        "refers to a missing row"
        if verb in {"INSERT", "REPLACE"}
        else "would orphan or break a reference"
    )
    return ReferenceViolation(
        f"foreign key constraint failed: {verb.lower()} on {table} {action} ({named})",
        hint="Create the referenced row first, or delete/update the rows that refer to this one.",
        table=table,
        constraints=constraints,
    )
