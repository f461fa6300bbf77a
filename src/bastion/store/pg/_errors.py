"""Translation of psycopg exceptions into bastion's error tree (the PostgreSQL counterpart of
``store/_errors.py``): the one place in the dialect that knows SQLSTATEs.

Messages are built from the server's primary message and the names in its diagnostics
(constraint, table, columns), never from ``message_detail``, which quotes the row's values.
"""

from __future__ import annotations

import re

import psycopg
from psycopg import errors as pgerr

from bastion.errors import (
    Conflict,
    ConstraintViolation,
    ReferenceViolation,
    StoreBusy,
    StoreDiskFull,
    StoreError,
    StoreOpenError,
    StoreReadOnly,
    StoreUnavailable,
)
from bastion.store.pg.retry import RETRYABLE

__all__ = ["sqlstate_of", "translate"]

_KEY_COLUMNS = re.compile(r"^Key \((?P<cols>.+?)\)=\(")


def sqlstate_of(err: BaseException) -> str | None:
    """The SQLSTATE the server sent with ``err``, if it is a server error."""
    return getattr(err, "sqlstate", None) if isinstance(err, psycopg.Error) else None


def _is_connection_error(err: psycopg.Error) -> bool:
    state = err.sqlstate or ""
    # 08: connection exception; 57P01-3: the server is shutting down / cannot connect now.
    return (
        state.startswith("08")
        or state in {"57P01", "57P02", "57P03"}
        or (isinstance(err, psycopg.OperationalError) and not state)
    )


def translate(err: BaseException, *, where: str, what: str | None = None) -> StoreError:
    """The ``StoreError`` for a psycopg error met on the database ``where`` (its display URL);
    the caller raises it ``from err``."""
    doing = f" while {what}" if what else ""
    if not isinstance(err, psycopg.Error):
        return StoreError(f"database error{doing} on {where}: {err}")
    state = err.sqlstate or ""
    diag = err.diag
    lines = str(err).strip().splitlines()
    primary = diag.message_primary or (lines[0] if lines else type(err).__name__)
    table = diag.table_name
    constraint = diag.constraint_name
    if isinstance(err, pgerr.UniqueViolation):
        match = _KEY_COLUMNS.match(diag.message_detail or "")
        # As SQLite names them ("items.name", "souls.bot_id, souls.version").
        columns = (
            ", ".join(
                f"{table}.{c.strip()}" if table else c.strip()
                for c in match.group("cols").split(",")
            )
            if match
            else None
        )
        return Conflict(
            f"conflict{doing}: {primary}",
            hint=f"A row with the same {columns or 'key'} exists already; update it or use "
            "another value.",
            columns=columns,
            table=table,
            constraint=constraint,
        )
    if isinstance(err, pgerr.ForeignKeyViolation):
        return ReferenceViolation(
            f"foreign key constraint failed{doing}: {primary}",
            hint="Create the referenced row first, or delete/update the rows that refer to "
            "this one.",
            table=table,
            constraint=constraint,
        )
    if isinstance(err, pgerr.IntegrityError):  # NOT NULL, CHECK, exclusion
        return ConstraintViolation(
            f"constraint failed{doing}: {primary}", table=table, constraint=constraint
        )
    if state in RETRYABLE:
        return StoreBusy(
            f"{RETRYABLE[state]} on {where}{doing}: {primary}",
            hint="Concurrent transactions touched the same rows; run the unit again.",
            sqlstate=state,
        )
    if isinstance(err, pgerr.LockNotAvailable | pgerr.QueryCanceled):
        return StoreBusy(f"{primary} on {where}{doing}", sqlstate=state)
    if isinstance(err, pgerr.ReadOnlySqlTransaction):
        return StoreReadOnly(
            f"{where} refused a write{doing}: {primary}",
            hint="This connection is read-only (a reader of the pool, or a read-only "
            "open); write through db.write.",
        )
    if isinstance(err, pgerr.DiskFull):
        return StoreDiskFull(
            f"the PostgreSQL server of {where} is out of disk space{doing}: {primary}",
            hint="Free space on the server's data directory; nothing was committed.",
        )
    if isinstance(err, pgerr.InvalidCatalogName):
        return StoreOpenError(
            f"{where}: {primary}",
            hint="Create the database first (`createdb NAME`), or fix the name in the URL.",
        )
    if isinstance(err, pgerr.InvalidAuthorizationSpecification | pgerr.InvalidPassword):
        return StoreOpenError(
            f"{where}: {primary}",
            hint="Check the user and password in the URL (or ~/.pgpass, PGPASSWORD).",
        )
    if _is_connection_error(err):
        return StoreUnavailable(f"cannot reach {where}{doing}: {primary}", sqlstate=state or None)
    if state.startswith("42"):  # syntax error or access rule violation
        return StoreError(
            f"SQL error{doing}: {primary}",
            hint="The statement is invalid for this schema (or this dialect); check the "
            "migration state.",
            sqlstate=state,
        )
    return StoreError(f"database error{doing} on {where}: {primary}", sqlstate=state or None)
