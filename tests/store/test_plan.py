"""Query-plan assertions: they pass on index lookups and fail, showing the plan, on scans and
on a query that does not use its declared index."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest

from bastion.store import Database, WriteTx
from bastion.store.migrations import Migration, Namespace
from bastion.store.plan import (
    QueryPlanError,
    assert_indexes,
    assert_plan,
    explain,
    missing_indexes,
    namespace_indexes,
)


@pytest.fixture
def db(tmp_path: Path) -> Generator[Database, None, None]:
    database = Database.open(tmp_path / "plan.db")

    def schema(tx: WriteTx) -> None:
        tx.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b REAL, c TEXT)")
        tx.execute("CREATE INDEX t_a_b ON t (a, b)")
        tx.execute("CREATE INDEX t_c ON t (c)")

    database.write(schema)
    yield database
    database.close()


def test_index_search_passes_and_names_the_index(db: Database) -> None:
    plan = assert_plan(db, "SELECT * FROM t WHERE a = ? AND b > ?", ("x", 1.0), index="t_a_b")
    assert plan.indexes == {"t_a_b"}
    assert plan.scans == []
    assert_plan(db, "SELECT * FROM t WHERE id = ?", (1,), index="PRIMARY KEY")


def test_full_scan_fails_with_the_plan_in_the_message(db: Database) -> None:
    with pytest.raises(QueryPlanError, match=r"full scan of t \(SCAN t\)") as err:
        assert_plan(db, "SELECT * FROM t WHERE b > ?", (1.0,))
    assert "plan:\n|-- SCAN t" in str(err.value)
    assert_plan(db, "SELECT * FROM t WHERE b > ?", (1.0,), allow_scan=["t"])


def test_walking_a_whole_index_counts_as_a_scan(db: Database) -> None:
    # ORDER BY c with no WHERE: SQLite walks t_c end to end.
    assert explain(db, "SELECT c FROM t ORDER BY c").scans
    with pytest.raises(QueryPlanError, match="full scan"):
        assert_plan(db, "SELECT c FROM t ORDER BY c")


def test_wrong_index_and_temp_sort_are_reported(db: Database) -> None:
    with pytest.raises(QueryPlanError, match=r"does not use index t_c \(uses t_a_b\)"):
        assert_plan(db, "SELECT * FROM t WHERE a = ?", ("x",), index="t_c")
    with pytest.raises(QueryPlanError, match="temporary b-tree"):
        assert_plan(db, "SELECT * FROM t WHERE a = ? ORDER BY c", ("x",), allow_temp_btree=False)


def test_index_presence_per_namespace(db: Database) -> None:
    ns = Namespace(
        "n",
        [
            Migration.sql(
                "0001_i",
                "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b REAL, c TEXT); CREATE INDEX t_a_b ON t (a, b); CREATE INDEX t_gone ON t (b);",
            )
        ],
    )
    assert namespace_indexes(ns) == ["t_a_b", "t_gone"]
    assert missing_indexes(db, namespace_indexes(ns)) == ["t_gone"]
    with pytest.raises(QueryPlanError, match="missing index\\(es\\) of namespace n: t_gone"):
        assert_indexes(db, namespace_indexes(ns), namespace="n")


def test_plan_reflects_a_schema_change_made_after_the_reader_was_pooled(tmp_path: Path) -> None:
    from bastion.store.plan import explain

    with Database.open(tmp_path / "p.db") as database:
        database.write(lambda tx: tx.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT)"))
        database.write(lambda tx: tx.execute("CREATE INDEX t_k ON t(k)"))
        assert "t_k" in explain(database, "SELECT id FROM t WHERE k = ?", ("x",)).indexes
        database.write(lambda tx: tx.execute("DROP INDEX t_k"))
        assert "t_k" not in explain(database, "SELECT id FROM t WHERE k = ?", ("x",)).indexes
