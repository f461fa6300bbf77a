"""Seed 004 workstream 6: hot-path query plans are stable and indexed, and every index the
migrations declare is present. A dropped index or a rewritten query that starts scanning fails
here with the plan printed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from bastion.store import Database, ReadTx
from bastion.store.plan import HotQuery, QueryPlan, assert_indexes, assert_plan, namespace_indexes
from examples.pupitre import migrations
from examples.pupitre.app import Pupitre
from examples.pupitre.quest import queries as quest_q
from examples.pupitre.talk import queries as talk_q
from examples.pupitre.workspace import queries as workspace_q

PROFILE_HOT = (*talk_q.HOT, *quest_q.HOT)


def _check(
    db: Database, sql: str, params: Sequence[Any] | Mapping[str, Any], **kwargs: Any
) -> QueryPlan:
    """``assert_plan`` inside one read unit that first reads the schema.

    ``EXPLAIN QUERY PLAN`` never starts a read transaction, so a pooled reader that has not
    run a statement since another connection changed the schema explains with its *old*
    schema (an index dropped a moment ago still shows as used). Touching ``sqlite_master``
    in the same snapshot first makes the plan reflect the file as it is now.
    """

    def unit(tx: ReadTx) -> QueryPlan:
        tx.query("SELECT count(*) FROM sqlite_master")
        return assert_plan(tx, sql, params, **kwargs)

    return db.read(unit)


@pytest.mark.parametrize("hot", PROFILE_HOT, ids=lambda h: h.name)
def test_profile_hot_query_uses_its_index(app: Pupitre, hot: HotQuery) -> None:
    # No temporary b-tree either: the index delivers the ORDER BY, so a page is a range read.
    _check(app.profile(), hot.sql, hot.params, index=hot.index, allow_temp_btree=False)


@pytest.mark.parametrize("hot", workspace_q.HOT, ids=lambda h: h.name)
def test_global_hot_query_uses_its_index(app: Pupitre, hot: HotQuery) -> None:
    _check(app.global_db, hot.sql, hot.params, index=hot.index)


def test_feedback_link_and_workspace_switch_are_key_lookups(app: Pupitre) -> None:
    from examples.pupitre.feedback import queries as feedback_q

    # An UPDATE's WHERE is planned like a SELECT's: it must be a rowid/primary-key search.
    _check(app.profile(), feedback_q.LINK_RUN, (1, 1))
    _check(app.profile(), feedback_q.LINK_ATTEMPT, (1, 1))
    _check(app.global_db, workspace_q.ACTIVATE, (0.0, "main"))


def test_every_declared_index_exists(app: Pupitre) -> None:
    profile_indexes = namespace_indexes(migrations.profile_namespace())
    assert {"idx_runs_project", "idx_talk_projects_number"} <= set(profile_indexes)
    assert_indexes(app.profile(), profile_indexes, namespace="pupitre")
    assert_indexes(
        app.global_db, namespace_indexes(migrations.global_namespace()), namespace="pupitre_global"
    )


def test_a_dropped_index_is_caught(app: Pupitre) -> None:
    db = app.profile()
    db.write(lambda tx: tx.execute("DROP INDEX idx_runs_project"))
    with pytest.raises(AssertionError, match="idx_runs_project"):
        _check(db, talk_q.RUNS_FOR_PROJECT, (1, 50), index="idx_runs_project")
    with pytest.raises(AssertionError, match="missing index"):
        assert_indexes(db, namespace_indexes(migrations.profile_namespace()))
