"""Typed access to peer reviews."""

from __future__ import annotations

import dataclasses
import time

from bastion.store import Database, ReadTx, WriteTx
from examples.pupitre.pack import queries as q

__all__ = ["PeerReview", "insert_review", "reviews_for_run"]


@dataclasses.dataclass(frozen=True, slots=True)
class PeerReview:
    id: int
    run_id: int
    reviewer: str
    body: str
    created_at: float


def insert_review(tx: WriteTx, run_id: int, reviewer: str, body: str) -> int:
    return tx.insert(q.INSERT_REVIEW, (run_id, reviewer, body, time.time()))


def reviews_for_run(src: Database | ReadTx, run_id: int) -> list[PeerReview]:
    return [PeerReview(*r) for r in src.query(q.REVIEWS_FOR_RUN, (run_id,))]
