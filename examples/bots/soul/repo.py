"""Versioned soul storage (seed 003): saving inserts version N+1 *and* moves the bot's
``version_count`` pointer in one transaction (bastion's ``save_version``), so a reader sees
the old soul or the new one, never a pointer to a version that is not there.

Plan 01-06's operations on that history: every stored version carries the SHA-256 of its
content, checked on read (:attr:`SoulVersion.intact`, :meth:`SoulRepo.verify`);
:meth:`SoulRepo.rollback` makes an old version current again *as a new version* (history is
append-only: nothing is rewritten, and the rollback itself is in the history);
:meth:`SoulRepo.diff` compares two versions. A version whose content no longer matches its
hash is never rolled back to or diffed: ``StoreCorrupt`` names it.
"""

from __future__ import annotations

import difflib
import time

from bastion.errors import NotFound, StoreCorrupt
from bastion.store import ReadTx, Row, WriteTx
from bastion.store.repo import Repo, save_version
from examples.bots.soul import queries as q
from examples.bots.soul.types import SoulDiff, SoulVersion, content_hash

__all__ = ["SoulRepo"]


def _soul(row: Row) -> SoulVersion:
    return SoulVersion(*row)


def _checked(row: Row | None, bot_id: str, version: int) -> SoulVersion:
    """The version, or ``NotFound``; a version failing its hash is ``StoreCorrupt``."""
    if row is None:
        raise NotFound(
            f"bot {bot_id!r} has no soul version {version}",
            hint="List the versions with history().",
            entity="soul version",
            key=version,
        )
    soul = _soul(row)
    if not soul.intact:
        raise StoreCorrupt(
            f"soul version {version} of bot {bot_id!r} does not match its SHA-256 "
            f"(stored {soul.hash[:12]}…, content hashes to {content_hash(soul.content)[:12]}…)",
            hint="The row was changed outside the app. Roll back to an intact version "
            "(verify() lists the damaged ones) or restore a backup.",
        )
    return soul


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
        """Every version, newest first, with its content, so ``intact`` checks what is
        stored."""
        return [_soul(r) for r in self.db.query(q.LIST_VERSIONS, (bot_id,))]

    def verify(self, bot_id: str) -> list[int]:
        """The versions of ``bot_id`` whose content no longer matches their hash (oldest
        first); empty when the whole history is intact."""
        return sorted(s.version for s in self.history(bot_id) if not s.intact)

    def rollback(self, bot_id: str, version: int, message: str | None = None) -> SoulVersion:
        """Make ``version`` current again by saving its content as version N+1 (read, check
        and save in one transaction, so a concurrent save cannot slip in between). Unknown
        version -> ``NotFound``; a damaged one -> ``StoreCorrupt``; nothing is written."""

        def unit(tx: WriteTx) -> Row | None:
            target = _checked(tx.query_one(q.GET_VERSION, (bot_id, version)), bot_id, version)
            new = self.save_tx(
                tx, bot_id, target.content, message or f"rollback to version {version}"
            )
            return tx.query_one(q.GET_VERSION, (bot_id, new))

        row = self.db.write(unit)
        assert row is not None  # inserted in the same unit
        return _soul(row)

    def diff(self, bot_id: str, old: int, new: int, *, context: int = 3) -> SoulDiff:
        """A unified diff from version ``old`` to version ``new`` (both read in one snapshot,
        both checked against their hash)."""

        def unit(tx: ReadTx) -> tuple[SoulVersion, SoulVersion]:
            a = _checked(tx.query_one(q.GET_VERSION, (bot_id, old)), bot_id, old)
            b = _checked(tx.query_one(q.GET_VERSION, (bot_id, new)), bot_id, new)
            return a, b

        a, b = self.db.read(unit)
        lines = list(
            difflib.unified_diff(
                a.content.splitlines(keepends=True),
                b.content.splitlines(keepends=True),
                fromfile=f"soul v{old}",
                tofile=f"soul v{new}",
                n=context,
            )
        )
        # A last line without a newline would glue onto the next diff line.
        text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
        body = [line for line in lines if not line.startswith(("+++", "---"))]
        return SoulDiff(
            bot_id=bot_id,
            old=old,
            new=new,
            unified=text,
            added_lines=sum(1 for line in body if line.startswith("+")),
            removed_lines=sum(1 for line in body if line.startswith("-")),
        )
