"""The bot list and lookups are index reads, not scans; the namespace's indexes exist."""

from __future__ import annotations

import pytest

from bastion.store import ReadTx
from bastion.store.plan import HotQuery, QueryPlan, assert_indexes, assert_plan, namespace_indexes
from examples.bots import migrations
from examples.bots.apikeys import queries as apikey_q
from examples.bots.bot import queries as bot_q
from examples.bots.soul import queries as soul_q
from examples.bots.store import BotStore

HOT = (
    *bot_q.HOT,
    HotQuery("current soul", soul_q.CURRENT, ("some-id",), "sqlite_autoindex_soul_versions_1"),
    HotQuery("api key check", apikey_q.BY_HASH, ("0" * 64,), "sqlite_autoindex_api_keys_2"),
)


@pytest.mark.parametrize("hot", HOT, ids=lambda h: h.name)
def test_hot_query_uses_its_index(store: BotStore, hot: HotQuery) -> None:
    def unit(tx: ReadTx) -> QueryPlan:
        # EXPLAIN does not open a read transaction: read the schema first so a pooled
        # reader plans against the migrated schema, not one it cached earlier.
        if tx.dialect.name == "sqlite":
            tx.query("SELECT count(*) FROM sqlite_master")
        return assert_plan(tx, hot.sql, hot.params, index=hot.index, allow_temp_btree=False)

    store.db.read(unit)


def test_every_index_of_the_namespace_exists(store: BotStore) -> None:
    names = namespace_indexes(migrations.namespace())
    assert {"idx_bots_status", "idx_bots_category"} <= set(names)
    assert_indexes(store.db, names, namespace="bots")
