"""Typed access to ``workspaces``. Each function is one step of a multi-step write and takes
the caller's ``WriteTx``: the service composes steps inside ONE transaction, so a failure at
any step leaves no partial change (seed 004, workstream 3)."""

from __future__ import annotations

import dataclasses
import time

from bastion.store import Database, ReadTx, Row, WriteTx
from examples.pupitre.workspace import queries as q

__all__ = [
    "Workspace",
    "activate",
    "active",
    "deactivate_all",
    "delete",
    "fallback_for",
    "get",
    "insert",
    "list_all",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Workspace:
    id: str
    name: str
    db_file: str
    is_active: bool
    created_at: float
    last_opened_at: float | None


def _row(row: Row) -> Workspace:
    return Workspace(
        id=row[0],
        name=row[1],
        db_file=row[2],
        is_active=bool(row[3]),
        created_at=row[4],
        last_opened_at=row[5],
    )


def insert(tx: WriteTx, workspace_id: str, name: str, db_file: str) -> None:
    tx.execute(q.INSERT, (workspace_id, name, db_file, time.time()))


def deactivate_all(tx: WriteTx) -> int:
    return tx.execute(q.DEACTIVATE_ALL)


def activate(tx: WriteTx, workspace_id: str) -> None:
    """0 rows -> ``NotFound`` naming the workspace."""
    tx.execute_one(q.ACTIVATE, (time.time(), workspace_id), entity="workspace", key=workspace_id)


def delete(tx: WriteTx, workspace_id: str) -> None:
    tx.execute_one(q.DELETE, (workspace_id,), entity="workspace", key=workspace_id)


def fallback_for(tx: ReadTx, workspace_id: str) -> str | None:
    value = tx.scalar(q.FALLBACK, (workspace_id,))
    return None if value is None else str(value)


def get(src: Database | ReadTx, workspace_id: str) -> Workspace | None:
    row = src.query_one(q.GET, (workspace_id,))
    return None if row is None else _row(row)


def active(src: Database | ReadTx) -> Workspace | None:
    row = src.query_one(q.ACTIVE)
    return None if row is None else _row(row)


def list_all(src: Database | ReadTx) -> list[Workspace]:
    return [_row(r) for r in src.query(q.LIST)]
