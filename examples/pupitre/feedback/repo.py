"""Typed access to feedback. Linking is a step that must touch exactly one row: a zero-row
update raises ``NotFound`` so the caller's transaction (feedback insert + link) rolls back as a
whole instead of leaving an unlinked ``auto_feedback`` row (seed 004's ``run_analyze`` fix)."""

from __future__ import annotations

import dataclasses
import time
from typing import Literal

from bastion.store import Database, ReadTx, WriteTx
from examples.pupitre.feedback import queries as q

__all__ = ["Feedback", "add_note", "count", "get", "insert", "link_attempt", "link_run"]


@dataclasses.dataclass(frozen=True, slots=True)
class Feedback:
    id: int
    kind: Literal["run", "attempt"]
    summary: str
    created_at: float


def insert(tx: WriteTx, kind: Literal["run", "attempt"], summary: str) -> int:
    return tx.insert(q.INSERT_FEEDBACK, (kind, summary, time.time()))


def link_run(tx: WriteTx, run_id: int, feedback_id: int) -> None:
    tx.execute_one(q.LINK_RUN, (feedback_id, run_id), entity="run", key=run_id)


def link_attempt(tx: WriteTx, attempt_id: int, feedback_id: int) -> None:
    tx.execute_one(
        q.LINK_ATTEMPT, (feedback_id, attempt_id), entity="quest attempt", key=attempt_id
    )


def add_note(tx: WriteTx, feedback_id: int, body: str) -> int:
    return tx.insert(q.INSERT_NOTE, (feedback_id, body))


def get(src: Database | ReadTx, feedback_id: int) -> Feedback | None:
    row = src.query_one(q.GET_FEEDBACK, (feedback_id,))
    return None if row is None else Feedback(row[0], row[1], row[2], row[3])


def count(src: Database | ReadTx) -> int:
    return int(src.scalar(q.COUNT_FEEDBACK))
