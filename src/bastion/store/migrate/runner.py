"""Applying migrations: ``Migrator`` (check, migrate, dry run, baseline), backups, restore.

One process migrates a database at a time. ``migrate`` first reads the history without any
lock (the common open: nothing pending, nothing more to do); when something is pending it
takes the database's cross-process migration lock (:mod:`bastion.store.migrate.lock`), reads
the history again under it, and holds it until the last history write. A second process
opening the same database meanwhile waits for the lock, then finds the work done and returns:
it never runs a migration the first one ran, so it never fails on the first one's work, and
never restores a backup over it.

Everything that writes runs on the database's writer connection through
``Database.run_outside_transaction``: the engine's writer thread is held for the run (this
process's other writes queue behind it), and each transactional migration opens its own
``BEGIN IMMEDIATE``. A restore from the pre-migration backup is done only by the process that
ran the failed step, and only over its own work: when another connection committed to the
database since the backup (``PRAGMA data_version`` moved), restoring would drop that work, so
the database is left as it is and the error names the backup. See
:mod:`bastion.store.migrations` for the contract.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw

from bastion.errors import (
    MigrationCheckFailed,
    MigrationError,
    MigrationFailed,
)
from bastion.store._errors import translate
from bastion.store.crypt.cipher import connect
from bastion.store.engine import ReadTx, WriteTx
from bastion.store.migrate._common import (
    HISTORY_TABLE,
    EventSink,
    _number,
    _utc_stamp,
    baseline_mismatch,
    split_statements,
)
from bastion.store.migrate.declare import Migration, MigrationKind, Namespace
from bastion.store.migrate.helpers import (
    _describe_violations,
    _foreign_key_violations,
    normalize_orphans,
)
from bastion.store.migrate.history import (
    HistoryRow,
    MigrationPlan,
    _ensure_history,
    _read_history,
    _record,
    plan_namespace,
)
from bastion.store.migrate.lock import DEFAULT_LOCK_TIMEOUT_S, MigrationLock
from bastion.store.migrate.undo import (
    Outcome,
    StepFailed,
    check_interrupted,
    data_version,
    failure_error,
    final_checks,
)
from bastion.store.schema import SchemaDiff, SchemaObject, diff_schemas, schema_objects

if TYPE_CHECKING:
    from bastion.store.engine import Database

log = logging.getLogger("bastion.store.migrate")


@dataclasses.dataclass(frozen=True, slots=True)
class AppliedMigration:
    namespace: str
    id: str
    duration_ms: float
    orphans: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "id": self.id,
            "duration_ms": round(self.duration_ms, 3),
            "orphans": dict(self.orphans),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class NamespaceState:
    """Where one namespace stands in one database."""

    namespace: str
    applied: tuple[str, ...]
    pending: tuple[str, ...]
    last_applied: str | None
    last_applied_at: float | None
    #: The error a migrate would raise (bad history), as ``{code, message, hint}``; else None.
    problem: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "applied": list(self.applied),
            "pending": list(self.pending),
            "last_applied": self.last_applied,
            "last_applied_at": self.last_applied_at,
            "problem": self.problem,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class MigrationReport:
    """What a ``migrate`` did (or, with ``dry_run``, would do)."""

    dry_run: bool
    applied: tuple[AppliedMigration, ...]
    accepted_edits: tuple[str, ...]
    backups: tuple[Path, ...]
    states: tuple[NamespaceState, ...]
    #: Schema objects the run added/removed/changed (measured on the file it ran on).
    changes: SchemaDiff

    @property
    def orphans(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for item in self.applied:
            for relation, count in item.orphans.items():
                total[relation] = total.get(relation, 0) + count
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "applied": [a.to_dict() for a in self.applied],
            "accepted_edits": list(self.accepted_edits),
            "backups": [str(b) for b in self.backups],
            "namespaces": [s.to_dict() for s in self.states],
            "changes": self.changes.to_dict(),
            "orphans": self.orphans,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class BaselineResult:
    namespace: str
    at: str
    recorded: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "at": self.at, "recorded": list(self.recorded)}


def _run_body(tx: WriteTx, m: Migration) -> None:
    if m.kind is MigrationKind.SQL:
        assert m.text is not None
        for statement in split_statements(m.text):
            tx.execute(statement)
    else:
        assert m.fn is not None
        m.fn(tx)


def _apply_one(
    conn: apsw.Connection,
    ns: str,
    m: Migration,
    previous: str | None,
    sink: EventSink | None,
) -> AppliedMigration | None:
    """Apply ``m`` and record it; ``None`` if it is recorded already. Under the migration lock
    no other bastion process runs migrations meanwhile; the check under SQLite's write lock
    stays as a second line against a process that migrates without it (an older bastion).
    Raises ``StepFailed`` saying whether the file changed."""
    started = time.monotonic()
    orphans: dict[str, int] = {}
    if not m.transactional:
        if _recorded(conn, ns, m):
            return None
        # Outside a transaction each statement commits on its own: a failure part-way leaves
        # the earlier ones applied, and only the pre-migration backup can undo them.
        before = (conn.total_changes(), conn.pragma("schema_version"))
        done = 0
        try:
            assert m.text is not None
            for statement in split_statements(m.text):
                for _ in conn.execute(statement):
                    pass
                done += 1
        except BaseException as err:
            after = (conn.total_changes(), conn.pragma("schema_version"))
            changed = done > 0 or after != before
            raise StepFailed(err, Outcome.CHANGED if changed else Outcome.UNCHANGED) from err
        try:
            conn.execute("BEGIN IMMEDIATE")
            tx = WriteTx(conn)
            if _recorded(conn, ns, m):  # another process ran the same steps meanwhile
                conn.execute("COMMIT")
                return None
            duration = (time.monotonic() - started) * 1000
            _record(tx, ns, m, previous, duration)
            if sink is not None:
                sink(tx, "migration.applied", f"{ns}/{m.id}", {"duration_ms": round(duration, 3)})
            conn.execute("COMMIT")
        except BaseException as err:
            _rollback(conn)
            raise StepFailed(err, Outcome.CHANGED) from err
        return AppliedMigration(ns, m.id, duration)

    fk_before = int(conn.pragma("foreign_keys"))
    if m.foreign_keys_off:
        # Must be set outside a transaction (SQLite ignores it inside one).
        conn.pragma("foreign_keys", 0)
    try:
        conn.execute("BEGIN IMMEDIATE")
        tx = WriteTx(conn)
        if _recorded(conn, ns, m):
            conn.execute("ROLLBACK")
            return None
        orphans = normalize_orphans(tx, m.orphans)
        _run_body(tx, m)
        if m.foreign_keys_off:
            violations = _foreign_key_violations(tx)
            if violations:
                raise MigrationCheckFailed(
                    f"migration {ns}/{m.id} leaves foreign key violations: "
                    f"{_describe_violations(violations)}",
                    hint="Declare an OrphanPolicy for the relation, or fix the rows in the migration.",
                    namespace=ns,
                    migration=m.id,
                    violations=[list(v) for v in violations[:100]],
                )
        duration = (time.monotonic() - started) * 1000
        _record(tx, ns, m, previous, duration)
        if sink is not None:
            data: dict[str, Any] = {"duration_ms": round(duration, 3)}
            if orphans:
                data["orphans"] = orphans
            sink(tx, "migration.applied", f"{ns}/{m.id}", data)
        conn.execute("COMMIT")
    except BaseException as err:
        _rollback(conn)
        raise StepFailed(err, Outcome.UNCHANGED) from err
    finally:
        if m.foreign_keys_off:
            conn.pragma("foreign_keys", fk_before)
    return AppliedMigration(ns, m.id, (time.monotonic() - started) * 1000, orphans)


def _recorded(conn: apsw.Connection, ns: str, m: Migration) -> bool:
    return bool(
        conn.execute(
            f"SELECT 1 FROM {HISTORY_TABLE} WHERE namespace = ? AND id = ?", (ns, m.id)
        ).fetchall()
    )


def _rollback(conn: apsw.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(apsw.Error):
            conn.execute("ROLLBACK")


def _has_work(plan: MigrationPlan) -> bool:
    return bool(plan.pending or plan.accepted)


def _nothing_to_do(
    spaces: Sequence[Namespace], histories: Mapping[str, Sequence[HistoryRow]], *, dry_run: bool
) -> MigrationReport:
    return MigrationReport(
        dry_run=dry_run,
        applied=(),
        accepted_edits=(),
        backups=(),
        states=tuple(Migrator._state(ns, histories[ns.name]) for ns in spaces),
        changes=SchemaDiff((), (), ()),
    )


def _rotate(backups_dir: Path, namespace: str, keep: int) -> None:
    """Delete all but the ``keep`` newest pre-migration backups of ``namespace``. Destructive."""
    files = sorted(backups_dir.glob(f"pre-migrate-{namespace}-*.db"), key=lambda p: p.name)
    for old in files[: max(0, len(files) - keep)]:
        for path in (old, old.with_name(old.name + ".json")):  # the backup and its manifest
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


class Migrator:
    """Checks, applies and baselines namespaces of migrations on one :class:`Database`.

    ``backups_dir=None`` disables pre-migration backups (tests, throwaway databases); a failed
    non-transactional migration then cannot be undone, and the error says so.
    ``lock_timeout`` bounds the wait for another process's migration of the same database
    (None: wait as long as it takes); past it, ``MigrationLocked`` names the holder.
    """

    def __new__(cls, db: Database, *args: Any, **kwargs: Any) -> Migrator:
        # A PostgreSQL database gets its runner (store/pg/migrate.py): same API and history,
        # the server's advisory lock and transactional DDL instead of file locks and backups.
        if cls is Migrator and db.dialect.name == "postgresql":
            from bastion.store.pg.migrate import PgMigrator

            return super().__new__(PgMigrator)
        return super().__new__(cls)

    def __init__(
        self,
        db: Database,
        backups_dir: str | os.PathLike[str] | None = None,
        keep: int = 5,
        *,
        on_event: EventSink | None = None,
        lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT_S,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        if lock_timeout is not None and lock_timeout < 0:
            raise ValueError(f"lock_timeout must be >= 0 or None, got {lock_timeout}")
        self.db = db
        self.backups_dir = Path(backups_dir) if backups_dir is not None else None
        self.keep = keep
        self.on_event = on_event
        self.lock_timeout = lock_timeout

    def lock(self) -> MigrationLock:
        """The database's cross-process migration lock (not yet taken)."""
        return MigrationLock(self.db.path, timeout=self.lock_timeout)

    # --- read-only ----------------------------------------------------------------------

    def history(self, namespace: str) -> list[HistoryRow]:
        return self.db.read(lambda tx: _read_history(tx, namespace))

    def status(self, namespaces: Iterable[Namespace]) -> list[NamespaceState]:
        """Per namespace: applied, pending, last applied, and the problem if the history is
        bad. Read-only; never raises for a bad history (it is reported in ``problem``)."""
        return [self._state(ns, self.history(ns.name)) for ns in namespaces]

    @staticmethod
    def _state(ns: Namespace, history: Sequence[HistoryRow]) -> NamespaceState:
        problem: dict[str, str] | None = None
        applied_ids = {row.id for row in history}
        try:
            pending = tuple(m.id for m in plan_namespace(ns, history).pending)
        except MigrationError as err:
            problem = err.to_dict()
            pending = tuple(m.id for m in ns.migrations if m.id not in applied_ids)
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
        """Raise the error a migrate would raise for a bad history; read-only."""
        for ns in namespaces:
            plan_namespace(ns, self.history(ns.name))

    # --- applying -----------------------------------------------------------------------

    def migrate(
        self,
        namespaces: Iterable[Namespace],
        *,
        dry_run: bool = False,
        accept_edited: Iterable[str] = (),
    ) -> MigrationReport:
        """Apply every pending migration of ``namespaces`` (in the order given).

        With ``dry_run`` the run happens on a temporary copy of the database (no backups, no
        events); the live file is read once and left as it was.
        """
        spaces = list(namespaces)
        accept = tuple(accept_edited)
        for entry in accept:
            ns_name, _, mid = entry.partition("/")
            if not mid or not any(ns.name == ns_name for ns in spaces):
                raise ValueError(
                    f"--accept-edited wants NS/ID of a namespace being migrated, got {entry!r}"
                )
        if dry_run:
            return self._dry_run(spaces, accept)
        # Lock-free first look, on a reader: every open of a home comes here, and almost
        # always nothing is pending. The history only grows by whole migrations (each one's
        # row commits after its work), so this read can miss work, never invent it.
        histories = {ns.name: self.history(ns.name) for ns in spaces}
        if not any(_has_work(plan_namespace(ns, histories[ns.name], accept)) for ns in spaces):
            return _nothing_to_do(spaces, histories, dry_run=False)

        with self.lock() as lock:

            def run(tx: WriteTx) -> MigrationReport:
                return self._run(
                    tx._conn, spaces, accept, self.backups_dir, self.on_event, lock=lock
                )

            # Under the lock, from the history read to the last history write: no other
            # process migrates meanwhile. The run also holds this process's writer.
            return self.db.run_outside_transaction(run)

    def _dry_run(self, spaces: list[Namespace], accept: tuple[str, ...]) -> MigrationReport:
        # Next to the database: the filesystem that holds it has room for a copy (/tmp may
        # be a small tmpfs); mkdtemp makes the directory 0700.
        workdir = Path(tempfile.mkdtemp(prefix=".bastion-dry-run-", dir=self.db.path.parent))
        try:
            copy_path = workdir / "copy.db"

            def copy(tx: WriteTx) -> None:
                dst = connect(str(copy_path), key=self.db._key)
                try:
                    with dst.backup("main", tx._conn, "main") as backup:
                        while not backup.done:
                            backup.step(1024)
                finally:
                    dst.close()

            # Under the lock: never a copy of a database half-way through a migration.
            with self.lock():
                self.db.run_outside_transaction(copy)
            conn = connect(str(copy_path), key=self.db._key)
            try:
                conn.pragma("foreign_keys", 1)
                return self._run(conn, spaces, accept, None, None, lock=None)
            finally:
                conn.close()
        except apsw.Error as err:
            raise translate(err, path=str(self.db.path), what="preparing a dry run") from err
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _run(
        self,
        conn: apsw.Connection,
        spaces: list[Namespace],
        accept: tuple[str, ...],
        backups_dir: Path | None,
        sink: EventSink | None,
        *,
        lock: MigrationLock | None,
    ) -> MigrationReport:
        """Apply ``spaces`` on ``conn``; ``lock`` is held by the caller (None: a private copy,
        the dry run, which no other process can see)."""
        dry_run = lock is None
        reader = ReadTx(conn)
        # Validate every namespace before touching anything. Under the lock this read is the
        # one that counts: another process may have migrated since the lock-free look.
        histories = {ns.name: _read_history(reader, ns.name) for ns in spaces}
        plans = [(ns, plan_namespace(ns, histories[ns.name], accept)) for ns in spaces]
        if lock is not None and lock.interrupted is not None:
            check_interrupted(self.db, conn, lock, plans)
        if not any(_has_work(plan) for _, plan in plans):
            # Another process did the work while this one waited for the lock.
            return _nothing_to_do(spaces, histories, dry_run=dry_run)
        before = schema_objects(reader)
        # An empty database (a fresh install) has nothing a backup could save, and neither
        # has what this run creates in it: later namespaces of the same run take no backup
        # either, unless a non-transactional step might need undoing.
        fresh = not reader.scalar(
            "SELECT count(*) FROM sqlite_master WHERE name != ?", (HISTORY_TABLE,)
        )
        applied: list[AppliedMigration] = []
        accepted: list[str] = []
        backups: list[Path] = []
        for ns, plan in plans:
            if plan.accepted:
                accepted.extend(self._accept(conn, ns, plan.accepted, sink))
            if not plan.pending:
                continue
            backup: Path | None = None
            if backups_dir is not None and not (
                fresh and all(m.transactional for m in plan.pending)
            ):
                first = plan.pending[0]
                backup = backups_dir / f"pre-migrate-{ns.name}-{first.id}-{_utc_stamp()}.db"
                # The store's one backup routine: online, verified (quick_check, page count,
                # schema fingerprint) and with a manifest, so `db backups`, the dashboard and
                # recovery treat it like any other verified backup. Imported here: an open
                # with nothing pending takes none (issue 22 §7).
                from bastion.store.backup import create_backup

                create_backup(self.db, backups_dir, to=backup)
                backups.append(backup)
                _rotate(backups_dir, ns.name, self.keep)
                if sink is not None:
                    self._emit(
                        conn,
                        sink,
                        "backup.created",
                        str(backup),
                        {"reason": "pre-migrate", "namespace": ns.name},
                    )
            # Commits by other connections move data_version; ours (the migration's own, the
            # event above) do not. A restore is only over our own work (see undo.py).
            since_backup = data_version(conn)
            # After the backup: a restore returns the file exactly as it was, history table too.
            _ensure_history(conn)
            history = _read_history(reader, ns.name)
            previous = max(history, key=lambda r: _number(r.id)).id if history else None
            for m in plan.pending:
                if lock is not None and not m.transactional:
                    lock.step_started(ns.name, m.id, backup)
                try:
                    done = _apply_one(conn, ns.name, m, previous, sink)
                    if done is not None:
                        applied.append(done)
                except StepFailed as failed:
                    error = failure_error(
                        self.db, conn, ns, m, failed, backup=backup, since_backup=since_backup
                    )
                    if lock is not None and not m.transactional:
                        if error.details.get("partial"):
                            lock.keep_step_note()  # the next holder must not run it over this
                        else:
                            lock.step_done()
                    raise error from failed.error
                if lock is not None and not m.transactional:
                    lock.step_done()
                previous = m.id
            final_checks(self.db, conn, ns, backup, since_backup)
        after = schema_objects(reader)
        states = tuple(self._state(ns, _read_history(reader, ns.name)) for ns in spaces)
        return MigrationReport(
            dry_run=dry_run,
            applied=tuple(applied),
            accepted_edits=tuple(accepted),
            backups=tuple(backups),
            states=states,
            changes=diff_schemas(before, after),
        )

    @staticmethod
    def _emit(
        conn: apsw.Connection, sink: EventSink, kind: str, subject: str, data: dict[str, Any]
    ) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            sink(WriteTx(conn), kind, subject, data)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    @staticmethod
    def _accept(
        conn: apsw.Connection,
        ns: Namespace,
        accepted: Sequence[tuple[Migration, str]],
        sink: EventSink | None,
    ) -> list[str]:
        """Record accepted edits: new checksum stored and an event, in one transaction."""
        done = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            tx = WriteTx(conn)
            for m, old in accepted:
                tx.execute(
                    f"UPDATE {HISTORY_TABLE} SET checksum = ? WHERE namespace = ? AND id = ?",
                    (m.checksum, ns.name, m.id),
                )
                if sink is not None:
                    sink(
                        tx,
                        "migration.edit_accepted",
                        f"{ns.name}/{m.id}",
                        {"old_checksum": old, "new_checksum": m.checksum, "file": m.origin},
                    )
                done.append(f"{ns.name}/{m.id}")
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        return done

    # --- adopting a database --------------------------------------------------------------

    def baseline(self, ns: Namespace, at: str) -> BaselineResult:
        """Record ``ns``'s migrations up to ``at`` as applied, without running them, for a
        database created before it had a history, after checking its schema is what those
        migrations produce. Refuses (``BaselineMismatch``) when it is not."""
        target = ns.get(at)
        upto = [m for m in ns.migrations if m.number <= target.number]
        expected = fresh_schema(upto)
        complete = fresh_schema(list(ns.migrations))
        later_only = {k for k in complete if k not in expected}

        def run(tx: WriteTx) -> BaselineResult:
            conn = tx._conn
            reader = ReadTx(conn)
            if _read_history(reader, ns.name):
                raise MigrationError(
                    f"namespace {ns.name} already has a migration history; baseline is for "
                    "databases without one",
                    hint="Use `bastion db migrate`, or `bastion db status` to see the history.",
                    namespace=ns.name,
                )
            live = schema_objects(reader)
            mismatch = baseline_mismatch(
                self.db.path, ns.name, at, live=live, expected=expected, later_only=later_only
            )
            if mismatch is not None:
                raise mismatch
            _ensure_history(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                wtx = WriteTx(conn)
                previous: str | None = None
                for m in upto:
                    _record(wtx, ns.name, m, previous, 0.0, kind="baseline")
                    previous = m.id
                if self.on_event is not None:
                    self.on_event(
                        wtx,
                        "migration.baselined",
                        f"{ns.name}/{at}",
                        {"recorded": [m.id for m in upto]},
                    )
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            return BaselineResult(ns.name, at, tuple(m.id for m in upto))

        with self.lock():  # a history write: never beside another process's migration
            return self.db.run_outside_transaction(run)


def fresh_schema(migrations: Sequence[Migration]) -> dict[str, SchemaObject]:
    """The schema ``migrations`` produce on an empty database (built in memory)."""
    conn = apsw.Connection(":memory:")
    try:
        conn.pragma("foreign_keys", 1)
        previous: str | None = None
        _ensure_history(conn)
        for m in migrations:
            try:
                _apply_one(conn, "fresh", m, previous, None)
            except StepFailed as failed:
                raise MigrationFailed(
                    f"migration {m.id} ({m.origin}) fails on an empty database: {failed.error}",
                    migration=m.id,
                    file=m.origin,
                ) from failed.error
            previous = m.id
        return dict(schema_objects(ReadTx(conn)))
    finally:
        conn.close()
