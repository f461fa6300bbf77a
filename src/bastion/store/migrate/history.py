"""The ``schema_migrations`` history and the check of a history against the code."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence

import apsw

from bastion.__about__ import __version__
from bastion.errors import (
    MigrationChecksumMismatch,
    MigrationGap,
    MigrationOutOfOrder,
    MigrationUnknown,
)
from bastion.store.engine import ReadTx, WriteTx
from bastion.store.migrate._common import (
    _HISTORY_DDL,
    HISTORY_TABLE,
    _number,
)
from bastion.store.migrate.declare import Migration, Namespace


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryRow:
    """One row of ``schema_migrations``."""

    namespace: str
    id: str
    checksum: str
    applied_at: float
    duration_ms: float
    bastion_version: str
    previous_id: str | None = None
    kind: str = "applied"


@dataclasses.dataclass(frozen=True, slots=True)
class MigrationPlan:
    """What :func:`plan_namespace` found to do: migrations to apply, in order, and edited
    ones accepted (with the checksum recorded before)."""

    pending: tuple[Migration, ...]
    accepted: tuple[tuple[Migration, str], ...]


def plan_namespace(
    ns: Namespace,
    history: Sequence[HistoryRow],
    accept_edited: Iterable[str] = (),
    *,
    dialect: str = "sqlite",
) -> MigrationPlan:
    """Check ``history`` against ``ns`` and return what to apply; raise on a bad history.

    Pure: reads nothing, writes nothing. Checksums compare with the text that runs on
    ``dialect`` (see ``Migration.checksum_for``). ``accept_edited`` holds ``NS/ID`` (or bare ``ID``)
    entries whose changed checksum is accepted.

    * ``MigrationUnknown``: an applied id the code does not have (database newer than code).
    * ``MigrationChecksumMismatch``: an applied migration's text changed (both checksums shown).
    * ``MigrationGap`` / ``MigrationOutOfOrder``: a migration in the code is not applied but
      sorts before an applied one. The ``previous_id`` recorded with each applied row tells
      the two apart: if some applied row names the missing migration as its predecessor, the
      code had it when that row was applied and the history skipped it (a gap: e.g. a
      partial restore, a hand-edited history). Otherwise the migration was added to the code
      after later ids were applied (out of order).
    """
    accept = {a.split("/", 1)[1] if a.startswith(f"{ns.name}/") else a for a in accept_edited}
    known = {m.id: m for m in ns.migrations}
    applied = {row.id: row for row in history}
    unknown = sorted(set(applied) - set(known), key=_number)
    if unknown:
        newest = unknown[-1]
        raise MigrationUnknown(
            f"database has migration {ns.name}/{', '.join(unknown)} applied, which this code "
            f"does not know (the code's last is {ns.migrations[-1].id if ns.migrations else 'none'}): "
            "the database was migrated by a newer version",
            namespace=ns.name,
            ids=unknown,
            migration=newest,
        )
    accepted: list[tuple[Migration, str]] = []
    for m in ns.migrations:
        row = applied.get(m.id)
        current = m.checksum_for(dialect)
        if row is None or row.checksum == current:
            continue
        if m.id in accept:
            accepted.append((m, row.checksum))
            continue
        raise MigrationChecksumMismatch(
            f"migration {ns.name}/{m.id} ({m.origin}) was edited after it was applied: "
            f"applied checksum {row.checksum}, file checksum now {current}",
            hint=(
                f"Revert the edit to {m.origin}, or accept it with "
                f"`bastion db migrate --accept-edited {ns.name}/{m.id}`."
            ),
            namespace=ns.name,
            migration=m.id,
            file=m.origin,
            applied_checksum=row.checksum,
            current_checksum=current,
        )
    if applied:
        last_number = max(_number(i) for i in applied)
        # Ids the history itself names as a predecessor: they existed when later ones ran.
        chained = {row.previous_id for row in history if row.previous_id is not None}
        for index, m in enumerate(ns.migrations):
            if m.id in applied or m.number > last_number:
                continue
            later = next(x for x in ns.migrations[index + 1 :] if x.id in applied)
            skipped = m.id in chained
            if skipped:
                raise MigrationGap(
                    f"migration {ns.name}/{m.id} ({m.origin}) was never applied, but "
                    f"{later.id}, which came after it, was: the history has a gap",
                    hint=(
                        "Restore the database from a backup taken before the gap, or apply the "
                        "missing change by hand and record it with `bastion db baseline`."
                    ),
                    namespace=ns.name,
                    migration=m.id,
                    file=m.origin,
                    after=later.id,
                )
            raise MigrationOutOfOrder(
                f"migration {ns.name}/{m.id} ({m.origin}) is pending but sorts before "
                f"{later.id}, which is already applied",
                hint=(
                    f"Renumber {m.origin} to sort after {max(applied, key=_number)} "
                    "(the last applied id)."
                ),
                namespace=ns.name,
                migration=m.id,
                file=m.origin,
                applied_after=later.id,
            )
    pending = tuple(m for m in ns.migrations if m.id not in applied)
    return MigrationPlan(pending=pending, accepted=tuple(accepted))


def _ensure_history(conn: apsw.Connection) -> None:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (HISTORY_TABLE,)
    ).fetchall()
    if not exists:
        conn.execute(_HISTORY_DDL)


def _read_history(tx: ReadTx, namespace: str) -> list[HistoryRow]:
    exists = tx.scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (HISTORY_TABLE,)
    )
    if not exists:
        return []
    rows = tx.query(
        f"SELECT namespace, id, checksum, applied_at, duration_ms, bastion_version, previous_id, "
        f"kind FROM {HISTORY_TABLE} WHERE namespace = ? ORDER BY rowid",
        (namespace,),
    )
    return [HistoryRow(*row) for row in rows]


def _record(
    tx: WriteTx,
    ns: str,
    m: Migration,
    previous: str | None,
    duration_ms: float,
    *,
    kind: str = "applied",
) -> None:
    tx.execute(
        f"INSERT INTO {HISTORY_TABLE} (namespace, id, checksum, applied_at, duration_ms, "
        "bastion_version, previous_id, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (ns, m.id, m.checksum, time.time(), duration_ms, __version__, previous, kind),
    )
