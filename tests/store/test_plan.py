"""Query-plan assertions: they pass on index lookups and fail, showing the plan, on scans and
on a query that does not use its declared index."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest

from bastion.store import Database, WriteTx
from bastion.store.crypt import DatabaseKey
from bastion.store.crypt.cipher import connect
from bastion.store.migrations import Migration, Namespace
from bastion.store.plan import (
    QueryPlanError,
    assert_indexes,
    assert_plan,
    explain,
    missing_indexes,
    namespace_indexes,
)
from tests.store.keyed import OpenDatabase

pytestmark = [pytest.mark.encrypted_rerun, pytest.mark.engine_rerun]


@pytest.fixture
def db(open_engine: OpenDatabase, tmp_path: Path) -> Generator[Database, None, None]:
    """The plan tests' table, on each engine (``engine_rerun``): the checks are the same;
    what differs is the plan's text (SQLite's ``SEARCH t USING INDEX``, PostgreSQL's
    ``Index Scan using``), so tests that assert SQLite's words are ``sqlite_only``."""
    database = open_engine(tmp_path / "plan.db")

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


@pytest.mark.sqlite_only(
    "the plan SQLite chooses and its words; PostgreSQL searches t_a_b by b (not its first column)"
)
def test_full_scan_fails_with_the_plan_in_the_message(db: Database) -> None:
    # SQLite: ``SCAN t``; PostgreSQL (sequential scans priced out): a whole index walked,
    # ``SCAN t USING INDEX ...`` -- a full scan on both.
    with pytest.raises(QueryPlanError, match=r"full scan of t \(SCAN t") as err:
        assert_plan(db, "SELECT * FROM t WHERE b > ?", (1.0,))
    assert "plan:\n|-- SCAN t" in str(err.value)
    assert_plan(db, "SELECT * FROM t WHERE b > ?", (1.0,), allow_scan=["t"])


def test_a_query_no_index_serves_is_a_full_scan_on_both_engines(db: Database) -> None:
    """A condition no index serves is a full scan on both engines (PostgreSQL's ``Seq
    Scan`` even with sequential scans priced out), named with the table; the primary key
    still serves a lookup by id."""
    db.write(lambda tx: tx.execute("CREATE TABLE u (id INTEGER PRIMARY KEY, v TEXT)"))
    with pytest.raises(QueryPlanError, match=r"full scan of u \(SCAN u") as err:
        assert_plan(db, "SELECT * FROM u WHERE v > ?", ("",))
    assert "plan:\n|-- SCAN u" in str(err.value)
    assert_plan(db, "SELECT * FROM u WHERE v > ?", ("",), allow_scan=["u"])
    assert_plan(db, "SELECT v FROM u WHERE id = ?", (1,), index="PRIMARY KEY")


def test_walking_a_whole_index_counts_as_a_scan(db: Database) -> None:
    # ORDER BY c with no WHERE: SQLite walks t_c end to end; so does PostgreSQL (an Index
    # Scan with no Index Cond), which is a full scan too, not a use of t_c.
    assert explain(db, "SELECT c FROM t ORDER BY c").scans
    with pytest.raises(QueryPlanError, match="full scan"):
        assert_plan(db, "SELECT c FROM t ORDER BY c")


@pytest.mark.sqlite_only(
    "the plan SQLite chooses and its words; PostgreSQL walks an index where SQLite sorts"
)
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


def test_plan_reflects_a_schema_change_made_after_the_reader_was_pooled(
    open_database: OpenDatabase, tmp_path: Path
) -> None:
    from bastion.store.plan import explain

    with open_database(tmp_path / "p.db") as database:
        database.write(lambda tx: tx.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT)"))
        database.write(lambda tx: tx.execute("CREATE INDEX t_k ON t(k)"))
        assert "t_k" in explain(database, "SELECT id FROM t WHERE k = ?", ("x",)).indexes
        database.write(lambda tx: tx.execute("DROP INDEX t_k"))
        assert "t_k" not in explain(database, "SELECT id FROM t WHERE k = ?", ("x",)).indexes


# --- the parser and the messages, step by step (mutation testing, #23) -----------------------

from bastion.store.plan import PlanStep, QueryPlan  # noqa: E402


@pytest.mark.parametrize(
    ("detail", "table", "is_scan", "index"),
    [
        ("SCAN t", "t", True, None),
        ("SCAN t AS x", "t", True, None),
        ("SCAN t USING COVERING INDEX t_c", "t", True, "t_c"),
        ("SCAN t USING INDEX t_c", "t", True, "t_c"),
        ("SEARCH t USING INDEX t_a_b (a=? AND b>?)", "t", False, "t_a_b"),
        ("SEARCH t AS x USING COVERING INDEX t_a_b (a=?)", "t", False, "t_a_b"),
        ("SEARCH t USING INTEGER PRIMARY KEY (rowid=?)", "t", False, "PRIMARY KEY"),
        ("SEARCH w USING PRIMARY KEY (k=?)", "w", False, "PRIMARY KEY"),
        # Not table accesses, though some say SCAN or name an index.
        ("SCAN CONSTANT ROW", None, False, None),
        ("SCAN (subquery-1)", None, False, None),
        ("USE TEMP B-TREE FOR ORDER BY", None, False, None),
        ("CO-ROUTINE sub", None, False, None),
        ("MULTI-INDEX OR", None, False, None),
        ("LIST SUBQUERY 1 USING INDEX q", None, False, None),
        ("xSCAN t", None, False, None),
    ],
)
def test_plan_steps_parse(detail: str, table: str | None, is_scan: bool, index: str | None) -> None:
    step = PlanStep(3, 0, detail)
    assert (step.table, step.is_scan, step.index) == (table, is_scan, index)


def test_a_plan_renders_as_the_sqlite3_shell_tree() -> None:
    plan = QueryPlan(
        "q",
        (
            PlanStep(2, 0, "SCAN t"),
            PlanStep(5, 2, "SEARCH u USING INDEX u_k (k=?)"),
            PlanStep(7, 5, "SEARCH v USING INTEGER PRIMARY KEY (rowid=?)"),
            PlanStep(9, 0, "USE TEMP B-TREE FOR ORDER BY"),
            PlanStep(11, 99, "SCAN orphan"),  # a parent not in the plan: a top-level step
            PlanStep(12, 11, "SEARCH w USING INDEX w_k (k=?)"),
        ),
    )
    assert plan.render() == (
        "|-- SCAN t\n"
        "  |-- SEARCH u USING INDEX u_k (k=?)\n"
        "    |-- SEARCH v USING INTEGER PRIMARY KEY (rowid=?)\n"
        "|-- USE TEMP B-TREE FOR ORDER BY\n"
        "|-- SCAN orphan\n"
        "  |-- SEARCH w USING INDEX w_k (k=?)"
    )
    assert [s.table for s in plan.scans] == ["t", "orphan"]
    assert plan.indexes == {"u_k", "PRIMARY KEY", "w_k"}
    assert plan.uses_temp_btree
    assert not QueryPlan("q", (PlanStep(2, 0, "SCAN t"),)).uses_temp_btree


def test_explain_works_on_a_database_a_read_and_a_write_with_named_parameters(
    db: Database,
) -> None:
    sql = "SELECT * FROM t WHERE a = :a AND b > :b"
    params = {"a": "x", "b": 1.0}
    expected = {
        "sqlite": ("SEARCH t USING INDEX t_a_b (a=? AND b>?)",),
        "postgresql": ("SEARCH t USING INDEX t_a_b",),
    }[db.dialect.name]
    for plan in [
        explain(db, sql, params),
        db.read(lambda tx: explain(tx, sql, params)),
        db.write(lambda tx: explain(tx, sql, params)),
    ]:
        assert plan.sql == sql
        assert tuple(s.detail for s in plan.steps) == expected
        assert all(type(s.id) is int and type(s.parent) is int for s in plan.steps)
        assert plan.steps[0].parent == 0
    # Positional parameters on every kind of source too.
    for plan in [
        explain(db, "SELECT * FROM t WHERE c = ?", ["z"]),
        db.read(lambda tx: explain(tx, "SELECT * FROM t WHERE c = ?", ("z",))),
        db.write(lambda tx: explain(tx, "SELECT * FROM t WHERE c = ?", ("z",))),
    ]:
        assert plan.indexes == {"t_c"}


@pytest.mark.sqlite_only(
    "the plan SQLite chooses and its words; PostgreSQL walks an index where SQLite sorts"
)
def test_a_failed_plan_check_shows_every_problem_the_query_and_the_plan(db: Database) -> None:
    sql = "SELECT * FROM t WHERE b > ? ORDER BY c"
    with pytest.raises(QueryPlanError) as err:
        assert_plan(db, sql, (1.0,), index="t_a_b", allow_temp_btree=False)
    plan = explain(db, sql, (1.0,))
    problems = [f"full scan of t ({plan.scans[0].detail})"]
    problems.append(
        f"does not use index t_a_b (uses {', '.join(sorted(plan.indexes)) or 'no index'})"
    )
    if plan.uses_temp_btree:
        problems.append("sorts in a temporary b-tree (no index delivers the order)")
    assert str(err.value) == (
        f"query plan check failed: {'; '.join(problems)}\nquery: {sql}\nplan:\n{plan.render()}"
    )


@pytest.mark.sqlite_only(
    "the plan SQLite chooses and its words; PostgreSQL walks an index where SQLite sorts"
)
def test_a_query_using_no_index_says_so(db: Database) -> None:
    with pytest.raises(QueryPlanError, match=r"does not use index t_c \(uses no index\)"):
        assert_plan(db, "SELECT * FROM t WHERE b > ?", (1.0,), index="t_c", allow_scan=["t"])


@pytest.mark.sqlite_only(
    "the plan SQLite chooses and its words; PostgreSQL walks an index where SQLite sorts"
)
def test_several_indexes_are_listed_sorted(db: Database) -> None:
    sql = "SELECT * FROM t WHERE a = ? OR c = ?"
    with pytest.raises(QueryPlanError, match=r"does not use index zz \(uses t_a_b, t_c\)"):
        assert_plan(db, sql, ("x", "y"), index="zz")


@pytest.mark.sqlite_only(
    "the plan SQLite chooses and its words; PostgreSQL walks an index where SQLite sorts"
)
def test_allow_scan_excuses_only_the_tables_it_names(db: Database) -> None:
    db.write(lambda tx: tx.execute("CREATE TABLE u (id INTEGER PRIMARY KEY, v TEXT)"))
    sql = "SELECT * FROM t CROSS JOIN u WHERE t.b > 0 AND u.v > ''"
    with pytest.raises(QueryPlanError) as err:
        assert_plan(db, sql, allow_scan=["u"])
    assert "full scan of t " in str(err.value)
    assert "full scan of u " not in str(err.value)
    assert_plan(db, sql, allow_scan=["t", "u"])


@pytest.mark.sqlite_only(
    "the plan SQLite chooses and its words; PostgreSQL walks an index where SQLite sorts"
)
def test_a_passing_check_returns_the_plan_and_allows_a_temp_sort_by_default(
    db: Database,
) -> None:
    sql = "SELECT * FROM t WHERE a = ? ORDER BY c"
    plan = assert_plan(db, sql, ("x",), index="t_a_b")
    assert plan == explain(db, sql, ("x",))
    assert plan.uses_temp_btree


def test_missing_indexes_keep_the_callers_order_and_only_count_indexes(db: Database) -> None:
    db.write(lambda tx: tx.execute("CREATE TABLE idx_like (x INTEGER)"))
    assert missing_indexes(db, ["z_gone", "t_c", "idx_like", "a_gone"]) == [
        "z_gone",
        "idx_like",
        "a_gone",
    ]
    assert missing_indexes(db, ["t_c", "t_a_b"]) == []
    assert_indexes(db, ["t_c", "t_a_b"], namespace="n")  # nothing missing: no error
    with pytest.raises(QueryPlanError) as err:
        assert_indexes(db, ["t_c", "x1", "x2"])
    assert str(err.value) == "missing index(es): x1, x2"


def test_namespace_indexes_are_only_its_indexes_sorted() -> None:
    ns = Namespace(
        "n",
        [
            Migration.sql(
                "0001_i",
                "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT);"
                " CREATE INDEX z_a ON t (a); CREATE INDEX b_a ON t (a, id);"
                " CREATE VIEW v AS SELECT a FROM t;"
                " CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END;",
            ),
            Migration.sql("0002_j", "CREATE INDEX m_id ON t (id);"),
        ],
    )
    assert namespace_indexes(ns) == ["b_a", "m_id", "z_a"]


@pytest.mark.sqlite_only(
    "the plan SQLite chooses and its words; PostgreSQL walks an index where SQLite sorts"
)
def test_a_temp_sort_is_refused_in_its_own_words(db: Database) -> None:
    sql = "SELECT * FROM t WHERE a = ? ORDER BY c"
    with pytest.raises(QueryPlanError) as err:
        assert_plan(db, sql, ("x",), allow_temp_btree=False)
    assert str(err.value).startswith(
        "query plan check failed: sorts in a temporary b-tree (no index delivers the order)\n"
    )


@pytest.mark.sqlite_only(
    "the plan SQLite chooses and its words; PostgreSQL walks an index where SQLite sorts"
)
def test_explain_keeps_each_steps_id_and_parent(db: Database) -> None:
    sql = "SELECT * FROM t WHERE a IN (SELECT c FROM t WHERE c = ?) ORDER BY b"
    raw = db.read(lambda tx: tx.query(f"EXPLAIN QUERY PLAN {sql}", ("x",)))
    plan = explain(db, sql, ("x",))
    assert [(s.id, s.parent, s.detail) for s in plan.steps] == [(r[0], r[1], r[3]) for r in raw]
    assert len({s.id for s in plan.steps}) == len(plan.steps) > 2
    assert any(s.parent != 0 for s in plan.steps)  # nested: the tree needs the parent ids


class RawSource:
    """Anything with ``query(sql, params)`` -- here a plain apsw connection to the same file --
    is a source too (an application's own connection wrapper)."""

    def __init__(self, path: Path, key: DatabaseKey | None) -> None:
        import apsw

        self.conn = connect(str(path), flags=apsw.SQLITE_OPEN_READONLY, key=key)
        self.seen: list[str] = []

    def query(self, sql: str, params: object = ()) -> list[tuple[object, ...]]:
        self.seen.append(sql)
        return self.conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


@pytest.mark.sqlite_only(
    "the plan SQLite chooses and its words; PostgreSQL walks an index where SQLite sorts"
)
def test_any_source_with_query_is_explained_with_its_parameters(db: Database) -> None:
    source = RawSource(db.path, db.key)
    sql = "SELECT * FROM t WHERE a = ? AND b > ?"
    plan = explain(source, sql, ("x", 1.0))
    assert source.seen == [f"EXPLAIN QUERY PLAN {sql}"]
    assert plan == explain(db, sql, ("x", 1.0))
    assert plan.indexes == {"t_a_b"}
    named = "SELECT * FROM t WHERE c = :c"
    assert explain(source, named, {"c": "z"}).indexes == {"t_c"}
    assert_plan(source, sql, ("x", 1.0), index="t_a_b")
    source.conn.close()
