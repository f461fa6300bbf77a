"""The migration engine (public API): namespaced, checksummed, backed-up schema changes.

A **namespace** (``core``, ``vault``, an app's own) is an ordered list of migrations with ids
``NNNN_name``. Each migration is SQL (a file shipped in a package, or text) or a Python callable
``fn(tx: WriteTx)``. ``schema_migrations`` records, per namespace, every applied id with the
SHA-256 of its normalized text (or of the callable's declared source), when it ran, how long it
took, the bastion version, and the id that preceded it in the code at the time.

Before anything runs, the history is checked against the code and each inconsistency is refused
with its own error (see :func:`plan_namespace`): an applied id the code does not know
(``MigrationUnknown``: the database is newer than the code), an applied migration whose checksum
changed (``MigrationChecksumMismatch``), a hole in the applied history (``MigrationGap``), and a
migration added to the code with an id older than an applied one (``MigrationOutOfOrder``).

Applying (``Migrator.migrate``):

* an online backup (SQLite backup API, one consistent snapshot) goes to
  ``backups/pre-migrate-<ns>-<id>-<utc>.db``, verified with ``quick_check``, kept ``keep`` deep
  per namespace;
* each migration runs in its **own transaction together with its history row**, so a migration
  is either applied and recorded or neither. Migrations declared ``transactional=False`` (SQL
  SQLite refuses inside a transaction) run statement by statement; if one fails after the file
  changed, the backup is copied back into the live database (the backup API again, which swaps
  the content in one transaction, so open connections stay valid);
* migrations declared ``foreign_keys_off=True`` (table rebuilds, :func:`rebuild_table`) run with
  enforcement off and must pass ``PRAGMA foreign_key_check`` before their COMMIT;
* after the run, ``foreign_key_check`` and ``quick_check`` over the whole database; a violation
  names table and rowid, and the backup is restored.

One process at a time: a run that finds work pending takes the database's cross-process
migration lock (``<database>.migrate-lock``, a kernel file lock that dies with its holder),
reads the history again under it and holds it until the last history write. Another process
opening the database meanwhile waits, then finds the work done; it never runs a migration
twice, and a backup is only ever restored by the process that ran the failed step, over its
own work (see :mod:`bastion.store.migrate.lock` and :mod:`bastion.store.migrate.undo`).

``dry_run=True`` does all of it on a temporary copy and reports what would change; the live
file is only read.

The implementation lives in ``bastion.store.migrate`` (declare, history, helpers, lock, undo,
runner); import from here.
"""

from __future__ import annotations

from bastion.store.migrate._common import (
    HISTORY_TABLE,
    LOST_AND_FOUND_TABLE,
    EventSink,
    checksum_text,
    split_statements,
)
from bastion.store.migrate.declare import (
    Migration,
    MigrationKind,
    Namespace,
    OrphanAction,
    OrphanPolicy,
)
from bastion.store.migrate.helpers import RebuildResult, normalize_orphans, rebuild_table
from bastion.store.migrate.history import HistoryRow, MigrationPlan, plan_namespace
from bastion.store.migrate.runner import (
    AppliedMigration,
    BaselineResult,
    MigrationReport,
    Migrator,
    NamespaceState,
    fresh_schema,
)

__all__ = [
    "HISTORY_TABLE",
    "LOST_AND_FOUND_TABLE",
    "AppliedMigration",
    "BaselineResult",
    "EventSink",
    "HistoryRow",
    "Migration",
    "MigrationKind",
    "MigrationPlan",
    "MigrationReport",
    "Migrator",
    "Namespace",
    "NamespaceState",
    "OrphanAction",
    "OrphanPolicy",
    "RebuildResult",
    "checksum_text",
    "fresh_schema",
    "normalize_orphans",
    "plan_namespace",
    "rebuild_table",
    "split_statements",
]
