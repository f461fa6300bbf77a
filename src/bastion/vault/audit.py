"""The vault's audit trail: who did what to which secret, when -- never the value.

Each row has ts, actor, operation, scope/name, the HMAC fingerprint of the value involved, and
the pid. Changes (set, delete, import, reconcile, rekey) are recorded *inside* the transaction
that makes them, so a change without its row (or a row without its change) cannot exist. Reads
(get, inject) are hot paths: their rows and the ``last_used_at`` updates are queued in memory
and written in batches by a flusher thread (every ``flush_interval`` seconds and on close), so
a ``get`` costs microseconds, not a write transaction. A crash can lose the last fraction of a
second of *read* rows, never a change's row.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import threading
import time
from typing import Any

from bastion.store import Database, WriteTx

__all__ = ["AuditEntry", "AuditLog", "Operation"]


class Operation(enum.StrEnum):
    """What an audit row records. ``get`` is a read by code (the value went to a program,
    or was shown masked); ``reveal`` is a read whose value was shown to a person."""

    SET = "set"
    GET = "get"
    REVEAL = "reveal"
    DELETE = "delete"
    INJECT = "inject"
    IMPORT = "import"
    MIGRATE = "migrate"
    RECONCILE_ADOPT = "reconcile-adopt"
    RECONCILE_DROP = "reconcile-drop"
    #: Copied in from another application's keychain items (``bastion secrets adopt``).
    ADOPT = "adopt"
    REKEY = "rekey"
    #: An import kept a plaintext copy of a file it scrubbed (the path in ``detail``).
    PLAINTEXT_BACKUP = "plaintext-backup"
    PLAINTEXT_BACKUP_PURGED = "plaintext-backup-purged"


@dataclasses.dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit row: who (actor, pid) did what (operation) to which secret, when, and the value's
    fingerprint."""

    id: int
    ts: float
    actor: str
    operation: str
    scope: str | None
    name: str | None
    fingerprint: str | None
    pid: int
    detail: str | None

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-ready data."""
        return dataclasses.asdict(self)


_INSERT = (
    "INSERT INTO vault_audit (ts, actor, operation, scope, name, fingerprint, pid, detail) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


class AuditLog:
    """Writes and reads ``vault_audit`` in ``vault.db``. One per open vault."""

    def __init__(self, db: Database, *, flush_interval: float = 0.25) -> None:
        self._db = db
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._pending: list[tuple[Any, ...]] = []
        self._touched: dict[tuple[str, str], float] = {}
        self._interval = flush_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(
        self,
        tx: WriteTx,
        operation: Operation,
        *,
        actor: str,
        scope: str | None,
        name: str | None,
        fingerprint: str | None,
        detail: str | None = None,
    ) -> None:
        """Record a change inside the transaction that makes it."""
        tx.execute(
            _INSERT,
            (time.time(), actor, str(operation), scope, name, fingerprint, self._pid, detail),
        )

    def record_read(
        self, actor: str, operation: Operation, scope: str, name: str, fingerprint: str
    ) -> None:
        """Queue a read's row and its ``last_used_at``; the flusher writes them in a batch."""
        now = time.time()
        row = (now, actor, str(operation), scope, name, fingerprint, self._pid, None)
        with self._lock:
            self._pending.append(row)
            self._touched[(scope, name)] = now
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="bastion-vault-audit", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def flush(self) -> int:
        """Write queued read rows now; returns how many."""
        with self._lock:
            rows, self._pending = self._pending, []
            touched, self._touched = self._touched, {}
        if not rows:
            return 0

        def unit(tx: WriteTx) -> None:
            tx.executemany(_INSERT, rows)
            tx.executemany(
                "UPDATE vault_secrets SET last_used_at = max(coalesce(last_used_at, 0), ?) "
                "WHERE scope = ? AND name = ?",
                [(ts, scope, name) for (scope, name), ts in touched.items()],
            )

        self._db.write(unit)
        return len(rows)

    def entries(
        self, *, name: str | None = None, scope: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """Newest first. Read-only (flushes queued reads first so they show)."""
        self.flush()
        where, params = [], []
        if name is not None:
            where.append("name = ?")
            params.append(name)
        if scope is not None:
            where.append("scope = ?")
            params.append(scope)
        sql = "SELECT id, ts, actor, operation, scope, name, fingerprint, pid, detail FROM vault_audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        # Reads are written in batches after the fact: order by when they happened.
        sql += " ORDER BY ts DESC, id DESC LIMIT ?"
        rows = self._db.query(sql, (*params, limit))
        return [AuditEntry(*row) for row in rows]

    def prune(self, before: float) -> int:
        """Delete rows older than ``before`` (epoch seconds); returns how many. Destructive:
        the retention job calls it with its configured age."""
        self.flush()
        # Records of plaintext copies are kept: `bastion doctor` lists the copies still on
        # disk from them, however old (plaintext_backups.py).
        return self._db.write(
            lambda tx: tx.execute(
                "DELETE FROM vault_audit WHERE ts < ? AND operation != ?",
                (before, str(Operation.PLAINTEXT_BACKUP)),
            )
        )

    def close(self) -> None:
        """Stop the flusher thread and write the rows still queued."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()
