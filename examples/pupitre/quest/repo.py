"""Typed access to quests and attempts."""

from __future__ import annotations

import dataclasses
import time

from bastion.store import Database, ReadTx, WriteTx
from examples.pupitre.quest import queries as q

__all__ = ["Attempt", "Quest", "add_attempt", "attempts_for_quest", "get_attempt", "list_quests"]


@dataclasses.dataclass(frozen=True, slots=True)
class Quest:
    id: str
    title: str
    difficulty: int


@dataclasses.dataclass(frozen=True, slots=True)
class Attempt:
    id: int
    quest_id: str
    score: float | None
    feedback_id: int | None
    created_at: float


def list_quests(src: Database | ReadTx) -> list[Quest]:
    return [Quest(*r) for r in src.query(q.LIST_QUESTS)]


def add_attempt(tx: WriteTx, quest_id: str, score: float | None) -> int:
    """An unknown quest -> ``ReferenceViolation`` (FK from migration 0007)."""
    return tx.insert(q.INSERT_ATTEMPT, (quest_id, score, time.time()))


def get_attempt(src: Database | ReadTx, attempt_id: int) -> Attempt | None:
    row = src.query_one(q.GET_ATTEMPT, (attempt_id,))
    return None if row is None else Attempt(*row)


def attempts_for_quest(src: Database | ReadTx, quest_id: str, limit: int = 50) -> list[Attempt]:
    return [Attempt(*r) for r in src.query(q.ATTEMPTS_FOR_QUEST, (quest_id, limit))]
