"""Whether a database's migration history is already exactly what the code declares: the
look every open takes before it needs the migration engine.

Every open of a home migrates (``Home.open``; the supervisor's open too), and almost always
nothing is pending. Answering that through :class:`~bastion.store.migrations.Migrator`
imported the whole engine (runner, declare, history, helpers, lock, undo, schema and what
they import) and declared every namespace (a ``Migration`` per file, a ``Namespace`` each):
about 15-20 ms of CPU on every open, on ``bastion serve``'s path to its handshake among
them (issue 22 §7). :func:`history_is_current` answers the common case with none of it:
the code's declared history, per namespace the ids and checksums (read from a package's
SQL files by the same :func:`~bastion.store.migrate._common.package_sql` that
``Namespace.from_package`` reads them with, checksummed by the same ``checksum_text``),
against ``schema_migrations``' rows, read in one read transaction.

Why it proves what the engine's check proves. It answers True only when, in every
namespace, the applied ids are exactly the code's and each recorded checksum is the code's
(SQLite's text; the history's primary key is (namespace, id), so one row per id). Then
:func:`~bastion.store.migrate.history.plan_namespace` finds no applied id the code does not
know, no edited checksum, no gap and nothing out of order (both need a migration of the
code that is not applied), nothing pending and nothing to accept: the runner's lock-free
first look would return "nothing to do" without a refusal. Any other history (an id more or
fewer, a checksum that differs, no history table, two migrations of the code sharing a
number, a namespace given twice) answers False, and the caller runs the ``Migrator``, which
plans, refuses or applies exactly as before: every refusal is still the runner's. A
declaration the engine refuses (a misnamed file, an unknown ``-- bastion:`` directive) is
refused here with the same error.

Why no stored fingerprint (a hash of the code's history, written by the runner after a run
and compared at the next open): the history can change under it -- a restore of a backup,
a run by another version of bastion, ``db baseline``, a hand edit -- so the fingerprint
would have to be checked against the history anyway, and keeping it would add a write (and
a table or row that every history write must keep in step). The history is a few rows;
reading them is the check. Nothing is stored, so nothing goes stale.

Read-only: it reads the history on a reader connection and writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from bastion.store.migrate._common import (
    HISTORY_TABLE,
    _number,
    checksum_text,
    package_sql,
    sql_directives,
)

if TYPE_CHECKING:
    from bastion.store.engine import Database, ReadTx
    from bastion.store.migrate.declare import Namespace

__all__ = ["history_is_current", "namespace_history", "package_history"]

#: Per namespace, id -> checksum: the code's declared history, or a database's applied one.
History = Mapping[str, Mapping[str, str]]


def package_history(package: str) -> dict[str, str]:
    """id -> checksum of the migrations package ``package`` declares (``core``'s, the
    supervisor's: what ``Namespace.from_package`` would declare, without declaring it)."""
    texts, _ = package_sql(package)
    declared = {}
    for id, (text, file) in texts.items():
        sql_directives(text, f"{package}/{file}")  # refused here as the declaration would
        declared[id] = checksum_text(text)
    return declared


def namespace_history(ns: Namespace) -> dict[str, str]:
    """id -> checksum of a declared namespace (an app's own), as recorded on SQLite."""
    return {m.id: m.checksum_for("sqlite") for m in ns.migrations}


def history_is_current(db: Database, declared: Iterable[tuple[str, Mapping[str, str]]]) -> bool:
    """Whether ``db``'s history is exactly ``declared`` (namespace, id -> checksum pairs):
    then nothing is pending and the history passes every check of the engine. False means
    only "ask the ``Migrator``": it plans, applies or refuses. SQLite's history only (the
    checksums are of SQLite's text): on another engine, always False."""
    if db.dialect.name != "sqlite":
        return False
    code: dict[str, dict[str, str]] = {}
    for name, ids in declared:
        if name in code or len({_number(i) for i in ids}) != len(ids):
            return False  # the engine's declaration refuses these; let it say so
        code[name] = dict(ids)
    applied: dict[str, dict[str, str]] = {name: {} for name in code}
    for namespace, id, checksum in db.read(_read_history):
        if namespace in applied:
            applied[namespace][id] = checksum
    return applied == code


def _read_history(tx: ReadTx) -> list[tuple[str, str, str]]:
    exists = tx.scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (HISTORY_TABLE,)
    )
    if not exists:
        return []
    rows = tx.query(f"SELECT namespace, id, checksum FROM {HISTORY_TABLE}")
    return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]
