"""Typed access to the agent desktop's ``runs`` and ``messages`` (namespace ``agent_desktop``).

A run and its first messages are written in one write unit (all or nothing); a message for a
run that does not exist is ``ReferenceViolation`` (the FOREIGN KEY, enforced: bastion opens
every database with ``foreign_keys=ON`` and verifies it); deleting a run deletes its messages
(``ON DELETE CASCADE``); a status change or delete of a missing run is ``NotFound``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Literal

from bastion.store import Row, WriteTx
from bastion.store.migrations import Namespace
from bastion.store.repo import Repo, expect_changed
from examples.agent_desktop import queries as q

__all__ = ["NAMESPACE", "Message", "Run", "RunsRepo", "namespace", "utc_now"]

NAMESPACE = "agent_desktop"
Role = Literal["system", "user", "assistant", "tool"]
Status = Literal["running", "completed", "failed", "cancelled"]


def namespace() -> Namespace:
    """Migration v1 (``0001_create_initial_tables``) and whatever follows."""
    return Namespace.from_package(NAMESPACE, "examples.agent_desktop.migrations")


def utc_now() -> str:
    """ISO 8601 UTC with milliseconds: sorts as text, reads as a date."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    id: str
    title: str
    status: str
    created_at: str
    updated_at: str


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    id: int
    run_id: str
    role: str
    content: str
    created_at: str


def _run(row: Row) -> Run:
    return Run(str(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]))


def _message(row: Row) -> Message:
    return Message(int(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]))


class RunsRepo(Repo):
    __slots__ = ()

    def create_run(
        self, title: str, messages: Iterable[tuple[Role, str]] = (), *, run_id: str | None = None
    ) -> tuple[Run, list[Message]]:
        """A new run with its first messages, in one transaction."""
        new_id = run_id or uuid.uuid4().hex
        items = list(messages)

        def unit(tx: WriteTx) -> tuple[Run, list[Message]]:
            now = utc_now()
            tx.execute(q.INSERT_RUN, (new_id, title, "running", now, now))
            added = [self._add(tx, new_id, role, content) for role, content in items]
            return Run(new_id, title, "running", now, now), added

        result: tuple[Run, list[Message]] = self.db.write(unit)
        return result

    @staticmethod
    def _add(tx: WriteTx, run_id: str, role: Role, content: str) -> Message:
        now = utc_now()
        new_id = tx.insert(q.INSERT_MESSAGE, (run_id, role, content, now))
        return Message(new_id, run_id, role, content, now)

    def add_message(self, run_id: str, role: Role, content: str) -> Message:
        """Append one message; an unknown ``run_id`` raises ``ReferenceViolation``."""
        message: Message = self.db.write(lambda tx: self._add(tx, run_id, role, content))
        return message

    def get_run(self, run_id: str) -> Run | None:
        row = self.db.query_one(q.GET_RUN, (run_id,))
        return None if row is None else _run(row)

    def list_runs(self, limit: int = 50) -> list[Run]:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        return [_run(r) for r in self.db.query(q.LIST_RUNS, (limit,))]

    def messages(self, run_id: str) -> list[Message]:
        return [_message(r) for r in self.db.query(q.RUN_MESSAGES, (run_id,))]

    def set_status(self, run_id: str, status: Status) -> None:
        def unit(tx: WriteTx) -> None:
            expect_changed(tx.execute(q.SET_STATUS, (status, utc_now(), run_id)), f"run {run_id}")

        self.db.write(unit)

    def delete_run(self, run_id: str) -> None:
        """Delete the run and (cascade) its messages. Destructive; ``NotFound`` if missing."""
        self.db.write(
            lambda tx: expect_changed(tx.execute(q.DELETE_RUN, (run_id,)), f"run {run_id}")
        )
