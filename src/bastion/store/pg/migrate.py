"""Migrations on PostgreSQL: the same namespaces, history and refusals as on SQLite.

``Migrator(db)`` on a PostgreSQL database is a :class:`PgMigrator`. What is shared with
SQLite's runner, unchanged: the declarations (``Migration``/``Namespace``), the
``schema_migrations`` table and its columns, and :func:`plan_namespace`'s checks (unknown,
edited, gap, out of order), which compare against the checksum of the text that runs on
PostgreSQL (``Migration.sql(..., postgresql=...)``). What differs, and why:

* **Lock**: ``pg_advisory_lock`` per namespace, held by the migrating connection's session
  for the run (a file lock cannot serialize processes on other machines). The server drops
  it when the session ends, so a killed migrator never leaves it behind. Waiting is bounded
  by ``lock_timeout``; past it ``MigrationLocked`` names the holder's pid.
* **One transaction per migration**, with its history row: PostgreSQL's DDL is
  transactional, so a failed migration rolls back whole and no backup is taken or restored.
* **Dry run**: the whole run inside one transaction that is rolled back; the report is what
  it did.
* **Baseline**: the expected schema is what the migrations build in a scratch schema, inside
  a transaction rolled back after the catalog is read.
* Table rebuilds (``Migration.rebuild``) are SQLite's way of altering a table; on
  PostgreSQL they are refused (use ``ALTER TABLE`` in the migration's ``postgresql=`` text).
"""

from __future__ import annotations

import contextlib
import os
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import psycopg

from bastion.errors import (
    MigrationCheckFailed,
    MigrationError,
    MigrationFailed,
    MigrationLocked,
    StoreError,
)
from bastion.store.migrate._common import HISTORY_TABLE, _number, baseline_mismatch
from bastion.store.migrate.declare import Migration, MigrationKind, Namespace
from bastion.store.migrate.helpers import normalize_orphans
from bastion.store.migrate.history import HistoryRow, _record, plan_namespace
from bastion.store.migrate.runner import (
    AppliedMigration,
    BaselineResult,
    MigrationReport,
    Migrator,
    NamespaceState,
)
from bastion.store.pg._errors import translate
from bastion.store.pg.retry import Action, RetryState, is_retryable, on_failure
from bastion.store.pg.tx import PgWriteTx
from bastion.store.schema import SchemaDiff, SchemaObject, diff_schemas
from bastion.store.tx import ReadTx

if TYPE_CHECKING:
    from bastion.store.pg.engine import PgDatabase

__all__ = ["PgMigrator", "pg_schema_objects"]

DIALECT = "postgresql"
_IDLE = psycopg.pq.TransactionStatus.IDLE

_HISTORY_DDL = f"""CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (
    namespace TEXT NOT NULL,
    id TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL,
    bastion_version TEXT NOT NULL,
    previous_id TEXT,
    kind TEXT NOT NULL DEFAULT 'applied' CHECK (kind IN ('applied', 'baseline')),
    PRIMARY KEY (namespace, id)
)"""

#: The advisory lock space of bastion's migrations (the first key of the two-int form).
_LOCK_SPACE = 0x62617374  # "bast"
_LOCK_POLL_S = 0.05


def lock_key(namespace: str) -> int:
    """The second key of ``namespace``'s advisory lock (a signed 32-bit CRC of its name)."""
    crc = zlib.crc32(namespace.encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def pg_schema_objects(tx: Any) -> dict[str, SchemaObject]:
    """``type:name`` -> object for the tables, indexes and views of the current schema, each
    with a canonical definition from the catalog (the history table left out)."""
    objects: dict[str, SchemaObject] = {}
    columns = tx.query(
        "SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, '') "
        "FROM information_schema.columns WHERE table_schema = current_schema() "
        "ORDER BY table_name, ordinal_position"
    )
    tables: dict[str, list[str]] = {}
    for table, column, type_, nullable, default in columns:
        tables.setdefault(table, []).append(
            f"{column} {type_}{' not null' if nullable == 'NO' else ''}"
            f"{' default ' + default if default else ''}"
        )
    kinds = dict(
        tx.query(
            "SELECT table_name, table_type FROM information_schema.tables "
            "WHERE table_schema = current_schema()"
        )
    )
    constraints = tx.query(
        "SELECT c.conrelid::regclass::text, pg_get_constraintdef(c.oid) FROM pg_constraint c "
        "JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = current_schema() "
        "ORDER BY 1, 2"
    )
    for table, definition in constraints:
        tables.setdefault(table, []).append(str(definition))
    for table, parts in tables.items():
        if table == HISTORY_TABLE:
            continue
        kind = "view" if kinds.get(table) == "VIEW" else "table"
        objects[f"{kind}:{table}"] = SchemaObject(kind, table, table, "; ".join(parts))
    schema = str(tx.scalar("SELECT current_schema()"))
    for name, table, raw in tx.query(
        "SELECT indexname, tablename, indexdef FROM pg_indexes WHERE schemaname = "
        "current_schema() ORDER BY indexname"
    ):
        if table == HISTORY_TABLE:
            continue
        # pg_indexes qualifies the table with its schema: compare definitions without it.
        definition = str(raw).replace(f" ON {schema}.", " ON ")
        objects[f"index:{name}"] = SchemaObject("index", name, table, definition)
    return objects


class PgMigrator(Migrator):
    """``Migrator`` for a PostgreSQL database (see the module docstring)."""

    db: PgDatabase

    # --- read-only ----------------------------------------------------------------------

    def history(self, namespace: str) -> list[HistoryRow]:
        return self.db.read(lambda tx: _read_history(tx, namespace))

    def status(self, namespaces: Iterable[Namespace]) -> list[NamespaceState]:
        return [self._pg_state(ns, self.history(ns.name)) for ns in namespaces]

    @staticmethod
    def _pg_state(ns: Namespace, history: Sequence[HistoryRow]) -> NamespaceState:
        problem: dict[str, str] | None = None
        try:
            pending = tuple(m.id for m in plan_namespace(ns, history, dialect=DIALECT).pending)
        except MigrationError as err:
            problem = err.to_dict()
            done = {row.id for row in history}
            pending = tuple(m.id for m in ns.migrations if m.id not in done)
        ordered = sorted(history, key=lambda r: _number(r.id))
        last = ordered[-1] if ordered else None
        return NamespaceState(
            namespace=ns.name,
            applied=tuple(r.id for r in ordered),
            pending=pending,
            last_applied=last.id if last else None,
            last_applied_at=last.applied_at if last else None,
            problem=problem,
        )

    def check(self, namespaces: Iterable[Namespace]) -> None:
        for ns in namespaces:
            plan_namespace(ns, self.history(ns.name), dialect=DIALECT)

    # --- the lock -----------------------------------------------------------------------

    def lock(self) -> NoReturn:
        """No database-wide lock file on PostgreSQL: the runner takes an advisory lock per
        namespace itself (see the module docstring)."""
        raise MigrationError(
            f"{self.db.url}: PostgreSQL migrations lock each namespace with "
            "pg_advisory_lock while they run; there is no migration lock file to take",
            hint="Call migrate()/baseline(): they take and release the lock.",
        )

    @contextlib.contextmanager
    def _locked(self, conn: psycopg.Connection[Any], namespace: str) -> Iterator[None]:
        key = lock_key(namespace)
        deadline = None if self.lock_timeout is None else time.monotonic() + self.lock_timeout
        started = time.monotonic()
        while True:
            got = conn.execute("SELECT pg_try_advisory_lock($1, $2)", (_LOCK_SPACE, key)).fetchone()
            if got is not None and got[0]:
                break
            if deadline is not None and time.monotonic() >= deadline:
                holder = conn.execute(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 "
                    "AND objid = $2 AND granted",
                    (_LOCK_SPACE, key & 0xFFFFFFFF),
                ).fetchone()
                pid = holder[0] if holder else None
                raise MigrationLocked(
                    f"another process is migrating namespace {namespace} on {self.db.url} "
                    f"(server backend pid {pid if pid is not None else 'unknown'}); gave up "
                    f"after {time.monotonic() - started:.0f}s",
                    hint="Wait for it to finish and retry; `SELECT * FROM pg_stat_activity "
                    f"WHERE pid = {pid}` shows who it is.",
                    namespace=namespace,
                    pid=pid,
                )
            time.sleep(_LOCK_POLL_S)
        try:
            yield
        finally:
            if not conn.closed:
                with contextlib.suppress(psycopg.Error):
                    if conn.info.transaction_status != _IDLE:
                        conn.execute("ROLLBACK")
                    conn.execute("SELECT pg_advisory_unlock($1, $2)", (_LOCK_SPACE, key))

    # --- applying -----------------------------------------------------------------------

    def migrate(
        self,
        namespaces: Iterable[Namespace],
        *,
        dry_run: bool = False,
        accept_edited: Iterable[str] = (),
    ) -> MigrationReport:
        spaces = list(namespaces)
        accept = tuple(accept_edited)
        for entry in accept:
            ns_name, _, mid = entry.partition("/")
            if not mid or not any(ns.name == ns_name for ns in spaces):
                raise ValueError(
                    f"--accept-edited wants NS/ID of a namespace being migrated, got {entry!r}"
                )
        histories = {ns.name: self.history(ns.name) for ns in spaces}
        plans = {
            ns.name: plan_namespace(ns, histories[ns.name], accept, dialect=DIALECT)
            for ns in spaces
        }
        if not any(p.pending or p.accepted for p in plans.values()):
            return self._report(spaces, histories, dry_run=dry_run)
        conn = self.db._get(self.db._writers)
        try:
            with contextlib.ExitStack() as locks:
                for ns in spaces:
                    locks.enter_context(self._locked(conn, ns.name))
                return self._pg_run(conn, spaces, accept, dry_run=dry_run)
        finally:
            self.db._writers.putconn(conn)

    def _report(
        self,
        spaces: Sequence[Namespace],
        histories: Mapping[str, Sequence[HistoryRow]],
        *,
        dry_run: bool,
        applied: Sequence[AppliedMigration] = (),
        accepted: Sequence[str] = (),
        changes: SchemaDiff | None = None,
    ) -> MigrationReport:
        return MigrationReport(
            dry_run=dry_run,
            applied=tuple(applied),
            accepted_edits=tuple(accepted),
            backups=(),
            states=tuple(self._pg_state(ns, histories[ns.name]) for ns in spaces),
            changes=changes or SchemaDiff((), (), ()),
        )

    def _pg_run(
        self,
        conn: psycopg.Connection[Any],
        spaces: list[Namespace],
        accept: tuple[str, ...],
        *,
        dry_run: bool,
    ) -> MigrationReport:
        where = self.db.url
        cur = psycopg.RawCursor(conn)
        tx = PgWriteTx(conn, cur, where)
        sink = None if dry_run else self.on_event
        # A dry run is one transaction rolled back at the end; a real run commits each
        # migration with its history row.
        if dry_run:
            cur.execute("BEGIN")
        cur.execute(_HISTORY_DDL)  # under the lock: two first runs cannot race on it
        before = pg_schema_objects(tx)
        # Under the lock, the history read that counts.
        histories = {ns.name: _read_history(tx, ns.name) for ns in spaces}
        applied: list[AppliedMigration] = []
        accepted: list[str] = []
        try:
            for ns in spaces:
                plan = plan_namespace(ns, histories[ns.name], accept, dialect=DIALECT)
                if plan.accepted:
                    self._begin(cur, dry_run)
                    for m, old in plan.accepted:
                        new = m.checksum_for(DIALECT)
                        tx.execute(
                            f"UPDATE {HISTORY_TABLE} SET checksum = ? WHERE namespace = ? "
                            "AND id = ?",
                            (new, ns.name, m.id),
                        )
                        if sink is not None:
                            sink(
                                tx,
                                "migration.edit_accepted",
                                f"{ns.name}/{m.id}",
                                {"old_checksum": old, "new_checksum": new, "file": m.origin},
                            )
                        accepted.append(f"{ns.name}/{m.id}")
                    self._commit(cur, dry_run)
                history = histories[ns.name]
                previous = max(history, key=lambda r: _number(r.id)).id if history else None
                for m in plan.pending:
                    applied.append(
                        self._apply_retried(tx, ns, m, previous, dry_run=dry_run, sink=sink)
                    )
                    previous = m.id
            after = pg_schema_objects(tx)
            states = {ns.name: _read_history(tx, ns.name) for ns in spaces}
        finally:
            if conn.info.transaction_status != _IDLE:
                conn.execute("ROLLBACK")  # the dry run's end, or a failed step's
        return self._report(
            spaces,
            states,
            dry_run=dry_run,
            applied=applied,
            accepted=accepted,
            changes=diff_schemas(before, after),
        )

    @staticmethod
    def _begin(cur: psycopg.RawCursor[Any], dry_run: bool) -> None:
        cur.execute("SAVEPOINT bastion_migration" if dry_run else "BEGIN")

    @staticmethod
    def _commit(cur: psycopg.RawCursor[Any], dry_run: bool) -> None:
        cur.execute("RELEASE SAVEPOINT bastion_migration" if dry_run else "COMMIT")

    def _apply_retried(
        self,
        tx: PgWriteTx,
        ns: Namespace,
        m: Migration,
        previous: str | None,
        *,
        dry_run: bool,
        sink: Any,
    ) -> AppliedMigration:
        """``_apply``, run again when the server aborted it for a deadlock (its DDL's locks
        against an app's transaction) or a serialization failure: the step was rolled back
        whole, so nothing of it was written (the bound is the database's ``retry``)."""
        from bastion.store.pg.engine import sqlstate_in

        state = RetryState()
        while True:
            try:
                return self._apply(tx, ns, m, previous, dry_run=dry_run, sink=sink)
            except MigrationFailed as err:
                sqlstate = sqlstate_in(err)
                if sqlstate is None or not is_retryable(sqlstate):
                    raise
                state, decision = on_failure(
                    state, self.db.retry, sqlstate=sqlstate, now=time.monotonic()
                )
                if decision.action is Action.GIVE_UP:
                    raise
                self.db._count_retry(sqlstate)
                time.sleep(decision.delay)

    def _apply(
        self,
        tx: PgWriteTx,
        ns: Namespace,
        m: Migration,
        previous: str | None,
        *,
        dry_run: bool,
        sink: Any,
    ) -> AppliedMigration:
        started = time.monotonic()
        cur = tx._cur
        self._begin(cur, dry_run)
        try:
            orphans = normalize_orphans(tx, m.orphans) if m.orphans else {}
            if m.kind is MigrationKind.SQL:
                text = m.text_for(DIALECT)
                assert text is not None
                tx.script(text)
            elif m.origin.startswith("<rebuild "):
                raise MigrationError(
                    f"migration {ns.name}/{m.id} is a table rebuild, SQLite's way of altering "
                    "a table; PostgreSQL alters tables in place",
                    hint='Declare this step with Migration.sql(..., postgresql="ALTER TABLE '
                    '...") for PostgreSQL.',
                    namespace=ns.name,
                    migration=m.id,
                )
            else:
                assert m.fn is not None
                m.fn(tx)
            duration = (time.monotonic() - started) * 1000
            record = Migration(
                id=m.id, checksum=m.checksum_for(DIALECT), kind=m.kind, origin=m.origin
            )
            _record(tx, ns.name, record, previous, duration)
            if sink is not None:
                data: dict[str, Any] = {"duration_ms": round(duration, 3)}
                if orphans:
                    data["orphans"] = orphans
                sink(tx, "migration.applied", f"{ns.name}/{m.id}", data)
            self._commit(cur, dry_run)
        except BaseException as err:
            with contextlib.suppress(psycopg.Error):
                if dry_run:
                    cur.execute("ROLLBACK TO SAVEPOINT bastion_migration")
                else:
                    cur.execute("ROLLBACK")
            if isinstance(err, MigrationCheckFailed | MigrationError):
                raise
            reason = err.message if isinstance(err, StoreError) else str(err)
            if isinstance(err, psycopg.Error):
                reason = translate(err, where=self.db.url).message
            raise MigrationFailed(
                f"migration {ns.name}/{m.id} ({m.origin}) failed and was rolled back whole "
                f"(PostgreSQL's DDL is transactional): {reason}",
                hint=f"Fix {m.origin} and run the migration again; nothing of it was applied.",
                namespace=ns.name,
                migration=m.id,
                file=m.origin,
                backup=None,
                restored=False,
            ) from err
        return AppliedMigration(ns.name, m.id, duration, orphans)

    # --- adopting a database --------------------------------------------------------------

    def baseline(self, ns: Namespace, at: str) -> BaselineResult:
        target = ns.get(at)
        upto = [m for m in ns.migrations if m.number <= target.number]
        conn = self.db._get(self.db._writers)
        try:
            with self._locked(conn, ns.name):
                cur = psycopg.RawCursor(conn)
                tx = PgWriteTx(conn, cur, self.db.url)
                cur.execute(_HISTORY_DDL)
                if _read_history(tx, ns.name):
                    raise MigrationError(
                        f"namespace {ns.name} already has a migration history; baseline is "
                        "for databases without one",
                        hint="Use `bastion db migrate`, or `bastion db status` to see the history.",
                        namespace=ns.name,
                    )
                live = pg_schema_objects(tx)
                expected = self._scratch_schema(tx, upto)
                complete = self._scratch_schema(tx, list(ns.migrations))
                later_only = {k for k in complete if k not in expected}
                mismatch = baseline_mismatch(
                    self.db.url, ns.name, at, live=live, expected=expected, later_only=later_only
                )
                if mismatch is not None:
                    raise mismatch
                cur.execute("BEGIN")
                previous: str | None = None
                for m in upto:
                    record = Migration(
                        id=m.id, checksum=m.checksum_for(DIALECT), kind=m.kind, origin=m.origin
                    )
                    _record(tx, ns.name, record, previous, 0.0, kind="baseline")
                    previous = m.id
                if self.on_event is not None:
                    self.on_event(
                        tx,
                        "migration.baselined",
                        f"{ns.name}/{at}",
                        {"recorded": [m.id for m in upto]},
                    )
                cur.execute("COMMIT")
                return BaselineResult(ns.name, at, tuple(m.id for m in upto))
        finally:
            self.db._writers.putconn(conn)

    @staticmethod
    def _scratch_schema(tx: PgWriteTx, migrations: Sequence[Migration]) -> dict[str, SchemaObject]:
        """What ``migrations`` build in an empty schema (a transaction rolled back after)."""
        cur = tx._cur
        scratch = f"bastion_baseline_{os.getpid()}"
        cur.execute("BEGIN")
        try:
            cur.execute(f"CREATE SCHEMA {scratch}")
            cur.execute(f"SET LOCAL search_path = {scratch}")
            for m in migrations:
                if m.kind is MigrationKind.SQL:
                    text = m.text_for(DIALECT)
                    assert text is not None
                    tx.script(text)
                elif m.fn is not None:
                    m.fn(tx)
            return pg_schema_objects(tx)
        finally:
            cur.execute("ROLLBACK")


def _read_history(tx: ReadTx, namespace: str) -> list[HistoryRow]:
    if tx.scalar("SELECT to_regclass(?) IS NOT NULL", (HISTORY_TABLE,)) is not True:
        return []
    rows = tx.query(
        f"SELECT namespace, id, checksum, applied_at, duration_ms, bastion_version, "
        f"previous_id, kind FROM {HISTORY_TABLE} WHERE namespace = ? ORDER BY applied_at, id",
        (namespace,),
    )
    return [HistoryRow(*row) for row in rows]
