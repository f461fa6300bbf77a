"""Query-plan assertions: prove a hot query uses its index, and that a namespace's indexes exist.

``EXPLAIN QUERY PLAN`` rows are parsed into :class:`PlanStep` s. :func:`assert_plan` fails
(``QueryPlanError``, an ``AssertionError`` so pytest shows it as a test failure) when a query
scans a whole table or does not use the index it is declared to need, and prints the plan:

    assert_plan(db, "SELECT ... FROM logs WHERE source = ? AND ts >= ?", ("svc", 0), index="logs_source_ts")

A plan step ``SCAN t USING [COVERING] INDEX i`` walks all of ``i``: that is a scan too.
``SEARCH`` steps (an index or primary-key lookup) are what hot queries must do.

Read-only: ``EXPLAIN QUERY PLAN`` does not run the statement.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from bastion.store.hot import HotQuery

__all__ = [
    "HotQuery",
    "PlanStep",
    "QueryPlan",
    "QueryPlanError",
    "assert_indexes",
    "assert_plan",
    "explain",
    "missing_indexes",
    "namespace_indexes",
]

_TABLE_STEP = re.compile(r"^(?P<op>SCAN|SEARCH) (?P<table>[^\s(]+)(?: AS \S+)?(?P<rest>.*)$")
_INDEX = re.compile(r"USING (?:COVERING )?INDEX (?P<index>\S+)")
# Steps that are not table accesses even though they say SCAN.
_NOT_TABLES = {"CONSTANT"}


class _Queryable(Protocol):
    def query(self, sql: str, params: Any = ...) -> list[tuple[Any, ...]]: ...


class QueryPlanError(AssertionError):
    """A query's plan is not the one it was declared to have."""


@dataclasses.dataclass(frozen=True, slots=True)
class PlanStep:
    """One row of ``EXPLAIN QUERY PLAN``."""

    id: int
    parent: int
    detail: str

    @property
    def table(self) -> str | None:
        """The table this step reads, or None (a subquery, a temp b-tree, ...)."""
        match = _TABLE_STEP.match(self.detail)
        if not match or match.group("table") in _NOT_TABLES:
            return None
        return match.group("table")

    @property
    def is_scan(self) -> bool:
        """A whole-table (or whole-index) walk."""
        return self.table is not None and self.detail.startswith("SCAN ")

    @property
    def index(self) -> str | None:
        """The index this step uses; ``PRIMARY KEY`` for a (rowid or WITHOUT ROWID) key."""
        if self.table is None:
            return None
        match = _INDEX.search(self.detail)
        if match:
            return match.group("index")
        if "PRIMARY KEY" in self.detail:
            return "PRIMARY KEY"
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class QueryPlan:
    """A statement's query plan, to assert index use in tests."""

    sql: str
    steps: tuple[PlanStep, ...]

    @property
    def scans(self) -> list[PlanStep]:
        """The steps that scan a whole table."""
        return [s for s in self.steps if s.is_scan]

    @property
    def indexes(self) -> set[str]:
        """Every index the plan uses."""
        return {s.index for s in self.steps if s.index is not None}

    @property
    def uses_temp_btree(self) -> bool:
        """Whether the plan sorts or groups in a temporary b-tree."""
        return any("USE TEMP B-TREE" in s.detail for s in self.steps)

    def render(self) -> str:
        """The plan as an indented tree, as the sqlite3 shell prints it."""
        # A step whose parent is not in the plan (0, the root) is at the top level.
        depth: dict[int, int] = {}
        lines = []
        for step in self.steps:
            level = depth.get(step.parent, -1) + 1
            depth[step.id] = level
            lines.append("  " * level + "|-- " + step.detail)
        return "\n".join(lines)


def explain(
    source: _Queryable, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
) -> QueryPlan:
    """The plan the engine picks for ``sql`` on ``source`` (a Database, ReadTx or WriteTx):
    SQLite's ``EXPLAIN QUERY PLAN``, or PostgreSQL's ``EXPLAIN (FORMAT JSON)`` in the same
    step texts (see :mod:`bastion.store.pg.dialect`)."""
    # Imported here: domains import HotQuery from their queries module, and a one-shot read
    # (bastion.store.oneshot) must not load the engine for it.
    from bastion.store.engine import Database, ReadTx

    bound = params if isinstance(params, Sequence) else dict(params)
    dialect = getattr(source, "dialect", None)
    if dialect is not None and dialect.name != "sqlite":  # PostgreSQL: EXPLAIN (FORMAT JSON)
        if isinstance(source, Database):
            steps = source.read(lambda tx: dialect.explain(tx, sql, bound))
        else:
            steps = dialect.explain(source, sql, bound)
        return QueryPlan(sql, tuple(steps))
    if isinstance(source, Database):
        rows = source.read(lambda tx: tx.explain_query_plan(sql, bound))
    elif isinstance(source, ReadTx):
        rows = source.explain_query_plan(sql, bound)
    else:
        rows = source.query(f"EXPLAIN QUERY PLAN {sql}", bound)
    return QueryPlan(sql, tuple(PlanStep(int(r[0]), int(r[1]), str(r[3])) for r in rows))


def assert_plan(
    source: _Queryable,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] = (),
    *,
    index: str | None = None,
    allow_scan: Iterable[str] = (),
    allow_temp_btree: bool = True,
) -> QueryPlan:
    """Fail unless ``sql`` avoids full scans (except of tables in ``allow_scan``) and, when
    ``index`` is given, uses it (``"PRIMARY KEY"`` for a key lookup). Returns the plan."""
    plan = explain(source, sql, params)
    allowed = set(allow_scan)
    problems = [
        f"full scan of {step.table} ({step.detail})"
        for step in plan.scans
        if step.table not in allowed
    ]
    if index is not None and index not in plan.indexes:
        used = ", ".join(sorted(plan.indexes)) or "no index"
        problems.append(f"does not use index {index} (uses {used})")
    if not allow_temp_btree and plan.uses_temp_btree:
        problems.append("sorts in a temporary b-tree (no index delivers the order)")
    if problems:
        raise QueryPlanError(
            f"query plan check failed: {'; '.join(problems)}\nquery: {sql}\nplan:\n{plan.render()}"
        )
    return plan


def missing_indexes(source: _Queryable, names: Iterable[str]) -> list[str]:
    """The ``names`` that are not indexes in ``source``'s schema."""
    dialect = getattr(source, "dialect", None)
    if dialect is not None:
        present: set[str] = dialect.index_names(source)
    else:
        present = {
            r[0] for r in source.query("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
    return [n for n in names if n not in present]


def assert_indexes(source: _Queryable, names: Iterable[str], *, namespace: str = "") -> None:
    """Fail naming every index of ``names`` missing from ``source`` (a namespace's index
    presence check: a dropped or renamed index makes a hot query silently slow)."""
    missing = missing_indexes(source, names)
    if missing:
        owner = f" of namespace {namespace}" if namespace else ""
        raise QueryPlanError(f"missing index(es){owner}: {', '.join(missing)}")


def namespace_indexes(namespace: Any) -> list[str]:
    """Names of the indexes a migration ``Namespace`` creates on a fresh database; pass them
    to :func:`assert_indexes` for the namespace's index presence check."""
    from bastion.store.migrations import fresh_schema

    return sorted(
        obj.name for obj in fresh_schema(list(namespace.migrations)).values() if obj.type == "index"
    )
