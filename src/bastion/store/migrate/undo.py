"""What a failed or interrupted migration leaves behind, and undoing it.

* A step that failed: a transactional one was rolled back and left nothing; a no-transaction
  one that changed the file part-way is undone by copying the pre-migration backup back in
  (:func:`failure_error`), and so is a run whose after-checks fail (:func:`final_checks`).
  The restore is only ever done by the process that ran the step, under the migration lock,
  and only over its own work: when another connection committed since the backup
  (``PRAGMA data_version`` moved), restoring would drop that work, so the database is left as
  it is and the error names the backup and how to restore it once the others are stopped.
* A step a dead holder left half-done (:func:`check_interrupted`): run again only when the
  database provably holds none of it; otherwise refused, and the lock's note keeps saying so.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import apsw

from bastion.errors import BastionError, MigrationCheckFailed, MigrationError, MigrationFailed
from bastion.store._errors import translate
from bastion.store._snapshot_facts import read_source_state, row_counts, schema_fingerprint
from bastion.store.crypt.cipher import connect
from bastion.store.crypt.key import DatabaseKey
from bastion.store.engine import ReadTx
from bastion.store.migrate.declare import Migration, Namespace
from bastion.store.migrate.helpers import _describe_violations, _foreign_key_violations
from bastion.store.migrate.history import MigrationPlan
from bastion.store.migrate.lock import MigrationLock, lock_path, read_backup_manifest

if TYPE_CHECKING:
    from bastion.store.engine import Database

__all__ = [
    "Outcome",
    "StepFailed",
    "check_interrupted",
    "data_version",
    "failure_error",
    "final_checks",
]

log = logging.getLogger("bastion.store.migrate")


class Outcome(enum.Enum):
    """How a failed migration left the file (decides whether the backup is restored)."""

    UNCHANGED = "unchanged"
    CHANGED = "changed"


class StepFailed(Exception):
    """A migration step failed: the original error, and whether the file changed."""

    def __init__(self, error: BaseException, outcome: Outcome) -> None:
        super().__init__(str(error))
        self.error = error
        self.outcome = outcome


def data_version(conn: apsw.Connection) -> int:
    """``PRAGMA data_version``: moves when another connection commits (or truncates the WAL)."""
    return int(conn.pragma("data_version"))


def _may_restore(conn: apsw.Connection, backup: Path | None, since_backup: int) -> str | None:
    """None when restoring ``backup`` over the live database undoes only this run's work;
    otherwise why not. ``data_version`` moves when *another* connection commits (or truncates
    the WAL): its rows would be dropped by the restore, so the database is left as it is."""
    if backup is None:
        return "no backup was taken (backups disabled), so it was not restored"
    if data_version(conn) != since_backup:
        return (
            "it was not restored from the backup, because another connection wrote to the "
            "database since the backup was taken (restoring would drop that work)"
        )
    return None


def _restore_hint(db: Database, backup: Path | None) -> str:
    if backup is None:
        return "Repair the database by hand (or restore one of `bastion db backups`), fix the migration and retry."
    return (
        f"Stop the other processes using {db.path.name}, then restore the backup taken before "
        f"the migration: `bastion db restore {backup.name} --db {db.name}`; fix the migration "
        "and retry."
    )


def _quick_check(conn: apsw.Connection) -> list[str]:
    rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check")]
    return [] if rows == ["ok"] else rows


def _restore_from(conn: apsw.Connection, backup: Path, key: DatabaseKey | None = None) -> None:
    """Copy ``backup`` over the live database through ``conn``.

    The backup API writes the destination in one transaction: other connections see the old
    content or the new, never a mix, and stay open and valid. Destructive.
    """
    # An encrypted database's pre-migration backup has its key (the backup API copies pages
    # only between databases with the same cipher settings).
    src = connect(str(backup), flags=apsw.SQLITE_OPEN_READONLY, key=key)
    try:
        with conn.backup("main", src, "main") as restore:
            while not restore.done:
                restore.step(1024)
    finally:
        src.close()


def check_interrupted(
    db: Database,
    conn: apsw.Connection,
    lock: MigrationLock,
    plans: Sequence[tuple[Namespace, MigrationPlan]],
) -> None:
    """A previous holder died inside a no-transaction step: run it again only when the
    database provably holds none of it; else refuse (the note stays for the next one).

    Provably none: the WAL position is the one recorded just before the step (nothing
    committed since), or the database matches the backup taken before that run (schema
    and row counts: it was restored). Never restores anything itself: that backup is the
    dead process's, and whatever was committed since it would be lost.
    """
    step = lock.interrupted
    assert step is not None
    pending = any(
        ns.name == step.namespace and any(m.id == step.migration for m in plan.pending)
        for ns, plan in plans
    )
    if not pending:  # it died after the step's history row committed: nothing half-done
        lock.step_done()
        return
    if step.state_before is not None and read_source_state(db.path).same_data_as(step.state_before):
        log.warning("%s; nothing was committed since it started: running it again", step.describe())
        lock.step_done()
        return
    manifest = read_backup_manifest(step.backup)
    if (
        manifest is not None
        and manifest.get("schema_fingerprint") == schema_fingerprint(conn)
        and manifest.get("row_counts") == row_counts(conn)
    ):
        log.warning(
            "%s; the database is the backup taken before it: running it again", step.describe()
        )
        lock.step_done()
        return
    lock.keep_step_note()
    backup = Path(step.backup) if step.backup else None
    raise MigrationFailed(
        f"{step.describe()}; the database may hold part of it, so it is not run again "
        f"over it; {f'backup taken before it: {backup}' if backup else 'no backup was taken'}",
        hint=_restore_hint(db, backup)
        + ("" if backup else f" Then delete {lock_path(db.path)} to let the migration run."),
        namespace=step.namespace,
        migration=step.migration,
        backup=step.backup,
        restored=False,
        partial=True,
        interrupted_pid=step.pid,
    )


def failure_error(
    db: Database,
    conn: apsw.Connection,
    ns: Namespace,
    m: Migration,
    failed: StepFailed,
    *,
    backup: Path | None,
    since_backup: int,
) -> MigrationError:
    """The error for a failed step, after restoring the backup when the step changed the
    file part-way and a restore undoes only this run's work."""
    err = failed.error
    reason = str(translate(err)) if isinstance(err, apsw.Error) else str(err) or type(err).__name__
    where = f"backup: {backup}" if backup else "no backup was taken (backups disabled)"
    restored = False
    if failed.outcome is Outcome.CHANGED:
        refused = _may_restore(conn, backup, since_backup)
        if refused is not None:
            return MigrationFailed(
                f"migration {ns.name}/{m.id} ({m.origin}) failed part-way outside a "
                f"transaction and the database may be partly migrated: {reason}; "
                f"{refused}; {where}",
                hint=_restore_hint(db, backup),
                namespace=ns.name,
                migration=m.id,
                file=m.origin,
                backup=str(backup) if backup else None,
                restored=False,
                partial=True,
            )
        assert backup is not None  # _may_restore refuses without one
        _restore_from(conn, backup, db._key)
        restored = True
    state = (
        f"the database was restored from {backup}"
        if restored
        else "the migration was rolled back; the database is as it was before it"
    )
    cls: type[MigrationError] = (
        MigrationCheckFailed if isinstance(err, MigrationCheckFailed) else MigrationFailed
    )
    details = dict(err.details) if isinstance(err, BastionError) else {}
    details.update(
        namespace=ns.name,
        migration=m.id,
        file=m.origin,
        backup=str(backup) if backup else None,
        restored=restored,
    )
    return cls(
        f"migration {ns.name}/{m.id} ({m.origin}) failed: {reason}; {state}; {where}",
        hint="Fix the migration and run `bastion db migrate` again.",
        **details,
    )


def final_checks(
    db: Database, conn: apsw.Connection, ns: Namespace, backup: Path | None, since_backup: int
) -> None:
    """``foreign_key_check`` and ``quick_check`` after a namespace's run; on a problem,
    restore the backup when that undoes only this run's work, and raise."""
    reader = ReadTx(conn)
    violations = _foreign_key_violations(reader)
    problems = _quick_check(conn)
    if not violations and not problems:
        return
    if violations:
        what = f"foreign_key_check found violations: {_describe_violations(violations)}"
    else:
        what = f"quick_check failed: {'; '.join(problems[:3])}"
    refused = _may_restore(conn, backup, since_backup)
    if refused is None:
        assert backup is not None  # _may_restore refuses without one
        _restore_from(conn, backup, db._key)
        state = f"the database was restored from {backup}"
    else:
        state = f"{refused}; the migrations stay applied"
    raise MigrationCheckFailed(
        f"after migrating {ns.name}: {what}; {state}",
        hint=None if refused is None else _restore_hint(db, backup),
        namespace=ns.name,
        violations=[list(v) for v in violations[:100]],
        backup=str(backup) if backup else None,
        restored=refused is None,
    )
