"""Typed access to bots: frozen dataclasses (``types.py``) in and out, never raw rows.

Errors are bastion's: a taken slug is ``Conflict`` (the UNIQUE constraint, translated by the
store), an update or delete of an unknown id is ``NotFound`` (0 rows changed), an unknown
filter or sort key is ``ValueError`` naming the allowed ones.
"""

from __future__ import annotations

import builtins
import time
import uuid

from bastion.store import Row, WriteTx
from bastion.store.repo import Page, Repo, Where, paginate
from examples.bots.bot import queries as q
from examples.bots.bot.types import Bot, BotChanges, NewBot

__all__ = ["BotRepo"]


def _bot(row: Row) -> Bot:
    return Bot(*row)


class BotRepo(Repo):
    """Mutations go through the writer (``db.write``), reads through the reader pool."""

    def create(self, new: NewBot) -> Bot:
        bot_id = str(uuid.uuid4())
        now = time.time()

        def unit(tx: WriteTx) -> Row | None:
            tx.execute(
                q.INSERT,
                (bot_id, new.slug, new.name, new.description, new.status, new.category, now, now),
            )
            return tx.query_one(q.GET, (bot_id,))

        row = self.db.write(unit)
        assert row is not None  # inserted in the same unit
        return _bot(row)

    def get(self, bot_id: str) -> Bot | None:
        row = self.db.lookup(q.GET, (bot_id,))
        return None if row is None else _bot(row)

    def get_by_slug(self, slug: str) -> Bot | None:
        row = self.db.lookup(q.GET_BY_SLUG, (slug,))
        return None if row is None else _bot(row)

    def list(
        self,
        *,
        status: str | None = None,
        category: str | None = None,
        sort: str | None = None,
        direction: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[Bot]:
        """One page (offset pagination with the total count), filtered and sorted by
        whitelisted keys only."""
        where = Where(q.FILTERS).eq("status", status).eq("category", category)
        return paginate(
            self.db,
            select=q.COLUMNS,
            table=q.TABLE,
            where=where,
            sort=q.SORT,
            sort_key=sort,
            direction=direction,
            make=_bot,
            limit=limit,
            offset=offset,
        )

    def update(self, bot_id: str, changes: BotChanges) -> Bot:
        def unit(tx: WriteTx) -> Row | None:
            tx.execute_one(
                q.UPDATE,
                (
                    changes.slug,
                    changes.name,
                    changes.description,
                    changes.status,
                    changes.category,
                    time.time(),
                    bot_id,
                ),
                entity="bot",
                key=bot_id,
            )
            return tx.query_one(q.GET, (bot_id,))

        row = self.db.write(unit)
        assert row is not None  # updated in the same unit
        return _bot(row)

    def touch(self, bot_id: str) -> None:
        self.db.write(
            lambda tx: tx.execute_one(q.TOUCH, (time.time(), bot_id), entity="bot", key=bot_id)
        )

    def delete(self, bot_id: str, *, journal_purge: bool = False) -> None:
        """Soul versions go with the bot (ON DELETE CASCADE); secrets do not (they are in the
        vault). ``journal_purge``: record in the same transaction that the bot's secrets are
        to be purged (:meth:`pending_purges`), so a crash before the purge loses nothing."""

        def unit(tx: WriteTx) -> None:
            tx.execute_one(q.DELETE, (bot_id,), entity="bot", key=bot_id)
            if journal_purge:
                tx.execute(q.JOURNAL_PURGE, (bot_id, time.time()))

        self.db.write(unit)

    def pending_purges(self) -> builtins.list[str]:
        """Ids of deleted bots whose secrets are still to be purged, oldest first."""
        return [str(r[0]) for r in self.db.query(q.PENDING_PURGES)]

    def purge_done(self, bot_id: str) -> None:
        self.db.write(lambda tx: tx.execute(q.PURGE_DONE, (bot_id,)))
