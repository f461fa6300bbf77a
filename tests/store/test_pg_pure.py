"""The PostgreSQL dialect's pure parts, without a server: the retry policy (when a unit the
server aborted runs again), the rewrite of SQLite-style parameters, URL parsing (the password
never shown), and the reading of EXPLAIN (FORMAT JSON) plans."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bastion.errors import SqliteOnly, StoreOpenError
from bastion.store.dialect import SQLITE, require_sqlite
from bastion.store.migrations import Migration, Namespace
from bastion.store.pg.dialect import POSTGRESQL, plan_steps
from bastion.store.pg.retry import Action, RetrySpec, RetryState, delay_cap, on_failure
from bastion.store.pg.sql import bind, translate
from bastion.store.pg.url import is_postgres_url, parse_url

# --- retry policy ------------------------------------------------------------------------------


def test_serialization_failures_and_deadlocks_are_retried_others_are_not() -> None:
    spec = RetrySpec()
    for state in ("40001", "40P01"):
        _, decision = on_failure(RetryState(), spec, sqlstate=state, now=0.0)
        assert decision.action is Action.RETRY
    for state in ("23505", "42P01", None):
        _, decision = on_failure(RetryState(), spec, sqlstate=state, now=0.0)
        assert decision.action is Action.GIVE_UP
        assert "not retryable" in decision.reason


def test_the_bound_is_attempts_and_time() -> None:
    spec = RetrySpec(max_attempts=3, budget_s=10.0)
    state = RetryState()
    actions = []
    for now in (0.0, 0.1, 0.2):
        state, decision = on_failure(state, spec, sqlstate="40001", now=now)
        actions.append(decision.action)
    assert actions == [Action.RETRY, Action.RETRY, Action.GIVE_UP]
    assert "each of 3 attempts" in decision.reason
    state, decision = on_failure(RetryState(), spec, sqlstate="40001", now=100.0)
    assert decision.action is Action.RETRY
    state, decision = on_failure(state, spec, sqlstate="40001", now=110.5)
    assert decision.action is Action.GIVE_UP
    assert "the bound is 10s" in decision.reason


def test_delays_grow_to_a_cap_with_full_jitter() -> None:
    spec = RetrySpec(initial_s=0.001, factor=2.0, max_s=0.004)
    assert [delay_cap(spec, n) for n in (1, 2, 3, 4, 5)] == [0.001, 0.002, 0.004, 0.004, 0.004]
    rng = random.Random(7)
    state = RetryState()
    for _ in range(20):
        state, decision = on_failure(state, spec, sqlstate="40P01", now=0.0, rng=rng)
        assert 0.0 <= decision.delay <= spec.max_s
    with pytest.raises(ValueError, match="max_attempts"):
        RetrySpec(max_attempts=0)
    with pytest.raises(ValueError, match="initial_s"):
        RetrySpec(initial_s=1.0, max_s=0.1)


# --- SQL text ----------------------------------------------------------------------------------


def test_question_marks_become_numbered_parameters_outside_literals() -> None:
    sql, names = translate(
        "SELECT '?', \"a?\", x::text FROM t -- ?\nWHERE a = ? AND b = ?2 /* ? */ AND c = $$?$$"
    )
    assert sql == (
        "SELECT '?', \"a?\", x::text FROM t -- ?\nWHERE a = $1 AND b = $2 /* ? */ AND c = $$?$$"
    )
    assert names is None
    assert bind("SELECT * FROM t WHERE a = :a AND b = :b AND c = :a", {"a": 1, "b": 2}) == (
        "SELECT * FROM t WHERE a = $1 AND b = $2 AND c = $1",
        [1, 2],
    )
    with pytest.raises(ValueError, match="no value for parameter :b"):
        bind("SELECT :a, :b", {"a": 1})
    with pytest.raises(ValueError, match="mixes"):
        translate("SELECT ?, :a")


# --- URLs --------------------------------------------------------------------------------------


def test_urls_are_told_apart_from_paths_and_shown_without_password() -> None:
    assert is_postgres_url("postgresql://u@h/db")
    assert is_postgres_url("postgres://u@h/db")
    assert not is_postgres_url("/tmp/app.db")
    url = parse_url("postgresql://ada:s3cr%2Ft@db.example:6543/app?sslmode=require")
    assert url.display == "postgresql://ada@db.example:6543/app"
    assert "s3cr" not in repr(url)
    assert "s3cr" not in str(url)
    assert url.params["password"] == "s3cr/t"
    with pytest.raises(StoreOpenError) as err:
        parse_url("postgresql://ada:hunter2@h/db?nosuchoption=1")
    assert "hunter2" not in err.value.message


def test_sqlite_only_features_name_the_postgres_tool() -> None:
    class FakePg:
        dialect = POSTGRESQL
        url = "postgresql://u@h/db"

    require_sqlite(type("Lite", (), {"dialect": SQLITE})(), "backups")  # no refusal
    with pytest.raises(SqliteOnly, match="backups: a feature of SQLite files") as err:
        require_sqlite(FakePg(), "backups")
    assert "pg_dump" in (err.value.hint or "")


# --- plans -------------------------------------------------------------------------------------


def test_plans_read_as_sqlite_steps() -> None:
    plan = [
        {
            "Plan": {
                "Node Type": "Sort",
                "Plans": [
                    {
                        "Node Type": "Nested Loop",
                        "Plans": [
                            {"Node Type": "Seq Scan", "Relation Name": "runs", "Alias": "runs"},
                            {
                                "Node Type": "Index Scan",
                                "Relation Name": "bots",
                                "Index Name": "bots_pkey",
                                "Index Cond": "(id = runs.bot_id)",
                            },
                            {
                                "Node Type": "Bitmap Heap Scan",
                                "Relation Name": "souls",
                                "Plans": [
                                    {"Node Type": "Bitmap Index Scan", "Index Name": "ix_souls"}
                                ],
                            },
                        ],
                    }
                ],
            }
        }
    ]
    details = [s.detail for s in plan_steps(plan)]
    assert details == [
        "USE TEMP B-TREE FOR ORDER BY",
        "SCAN runs",
        "SEARCH bots USING PRIMARY KEY (bots_pkey)",
        "SEARCH souls USING INDEX ix_souls",
    ]
    # An index scan with no Index Cond walks the whole index (an ORDER BY served by it): a
    # scan, as SQLite says of the same plan, not a use of the index to find rows.
    walked = [
        {
            "Plan": {
                "Node Type": "Index Only Scan",
                "Relation Name": "t",
                "Index Name": "t_c",
            }
        }
    ]
    assert [s.detail for s in plan_steps(walked)] == ["SCAN t USING INDEX t_c"]
    steps = plan_steps(plan)
    assert steps[1].is_scan
    assert steps[1].table == "runs"
    assert steps[2].index == "PRIMARY KEY"
    assert steps[3].index == "ix_souls"


# --- per-dialect migration files ---------------------------------------------------------------


def test_a_package_may_carry_postgresql_text_beside_a_migration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "dialect_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "0001_t.sql").write_text("CREATE TABLE t (id INTEGER PRIMARY KEY);")
    (pkg / "0001_t.postgresql.sql").write_text("CREATE TABLE t (id BIGSERIAL PRIMARY KEY);")
    (pkg / "0002_u.sql").write_text("CREATE TABLE u (x TEXT);")
    monkeypatch.syspath_prepend(str(tmp_path))
    ns = Namespace.from_package("d", "dialect_pkg")
    first, second = sorted(ns.migrations, key=lambda m: m.id)
    assert first.text_for("sqlite") == "CREATE TABLE t (id INTEGER PRIMARY KEY);"
    assert first.text_for("postgresql") == "CREATE TABLE t (id BIGSERIAL PRIMARY KEY);"
    assert first.checksum == first.checksum_for("sqlite") != first.checksum_for("postgresql")
    assert second.text_for("postgresql") == second.text_for("sqlite")
    (pkg / "0003_v.postgresql.sql").write_text("CREATE TABLE v (x TEXT);")
    with pytest.raises(ValueError, match=r"0003_v\.postgresql\.sql has no 0003_v\.sql"):
        Namespace.from_package("d", "dialect_pkg")
    with pytest.raises(ValueError, match="needs its SQLite text"):
        Migration.sql("0004_w", postgresql="CREATE TABLE w (x TEXT)")
