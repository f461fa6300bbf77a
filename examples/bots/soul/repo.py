"""Versioned soul storage (seed 003): saving inserts version N+1 *and* moves the bot's
``version_count`` pointer in one transaction (bastion's ``save_version``), so a reader sees
the old soul or the new one, never a pointer to a version that is not there."""

from __future__ import annotations

import dataclasses
import hashlib
import time

from bastion.store import Row, WriteTx
from bastion.store.repo import Repo, save_version
from examples.bots.soul import queries as q

__all__ = ["SoulRepo", "SoulVersion", "content_hash"]


@dataclasses.dataclass(frozen=True, slots=True)
class SoulVersion:
    id: int
    bot_id: str
    version: int
    content: str
    hash: str
    message: str | None
    created_at: float

    @property
    def intact(self) -> bool:
        """The stored hash still matches the content (the seed's integrity check)."""
        return content_hash(self.content) == self.hash


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def _soul(row: Row) -> SoulVersion:
    return SoulVersion(*row)


class SoulRepo(Repo):
    def save_tx(self, tx: WriteTx, bot_id: str, content: str, message: str | None = None) -> int:
        """Inside a caller's unit: insert version N+1, point the bot at it. Returns N+1."""
        return save_version(
            tx,
            versions_table=q.VERSIONS_TABLE,
            owner_column="bot_id",
            owner_id=bot_id,
            values={
                "content": content,
                "hash": content_hash(content),
                "message": message,
                "created_at": time.time(),
            },
            pointer_table="bots",
            pointer_column="version_count",
        )

    def save(self, bot_id: str, content: str, message: str | None = None) -> SoulVersion:
        """Unknown bot -> ``ReferenceViolation`` (FK) and nothing is written."""

        def unit(tx: WriteTx) -> Row | None:
            version = self.save_tx(tx, bot_id, content, message)
            return tx.query_one(q.GET_VERSION, (bot_id, version))

        row = self.db.write(unit)
        assert row is not None  # inserted in the same unit
        return _soul(row)

    def current(self, bot_id: str) -> SoulVersion | None:
        row = self.db.query_one(q.CURRENT, (bot_id,))
        return None if row is None else _soul(row)

    def get(self, bot_id: str, version: int) -> SoulVersion | None:
        row = self.db.query_one(q.GET_VERSION, (bot_id, version))
        return None if row is None else _soul(row)

    def history(self, bot_id: str) -> list[SoulVersion]:
        """Every version, newest first, without the content (it can be large)."""
        return [_soul(r) for r in self.db.query(q.LIST_VERSIONS, (bot_id,))]
