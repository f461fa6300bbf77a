"""PostgreSQL's side of :class:`bastion.store.dialect.Dialect`: plans from ``EXPLAIN (FORMAT
JSON)``, the catalog from ``information_schema``/``pg_indexes`` (the connection's current
schema: ``search_path`` decides which tables are the app's).

A plan is turned into the step texts :mod:`bastion.store.plan` reads on SQLite, so one
assertion (``assert_plan(db, sql, index="ix_bots_owner")``) holds on both engines:
``Seq Scan`` is ``SCAN t``, an index (only/bitmap) scan is ``SEARCH t USING INDEX i``, a
primary-key index (``t_pkey``) is ``SEARCH t USING PRIMARY KEY``, an index scan with no
``Index Cond`` (the whole index walked, a filter on each row) is ``SCAN t USING INDEX i`` --
a full scan, as SQLite counts it -- and a ``Sort`` node is ``USE TEMP B-TREE FOR ORDER BY``.

Why the plan is asked with ``enable_seqscan = off`` and ``enable_sort = off``: on a table of
a few rows (every test's) PostgreSQL ignores whatever indexes exist, because reading one page
and sorting it is cheaper than an index. With sequential scans and sorts priced out (not
forbidden), the planner shows the index it *would* use on a large table, and still shows
``Seq Scan`` or ``Sort`` when no index can serve the query or deliver its order: what an
index-use assertion is about.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from bastion.store.dialect import Column, _Queryable
from bastion.store.plan import PlanStep

__all__ = ["POSTGRESQL", "PgDialect", "plan_steps"]

Params = Sequence[Any] | Mapping[str, Any]

_INDEX_SCANS = {"Index Scan", "Index Only Scan", "Bitmap Index Scan"}


def _walk(node: Mapping[str, Any], parent: int, counter: Iterator[int]) -> Iterator[PlanStep]:
    kind = str(node.get("Node Type", ""))
    relation = node.get("Relation Name") or node.get("Alias")
    index = node.get("Index Name")
    me = next(counter)
    detail: str | None = None
    if kind == "Seq Scan":
        detail = f"SCAN {relation}"
    elif kind in _INDEX_SCANS and index and "Index Cond" not in node and relation:
        # No condition on the index: it is walked end to end (what seqscan = off makes of
        # a query no index serves), SQLite's ``SCAN t USING INDEX i``: a full scan.
        detail = f"SCAN {relation} USING INDEX {index}"
    elif kind in _INDEX_SCANS and index:
        table = relation  # None under a Bitmap Heap Scan: _fix_bitmaps names it
        if table and str(index) == f"{table}_pkey":
            detail = f"SEARCH {table} USING PRIMARY KEY ({index})"
        else:
            detail = f"SEARCH {table} USING INDEX {index}"
    elif kind in {"Sort", "Incremental Sort"}:
        detail = "USE TEMP B-TREE FOR ORDER BY"
    if detail is not None:
        yield PlanStep(me, parent, detail)
    for child in node.get("Plans", ()) or ():
        yield from _walk(child, me if detail is not None else parent, counter)


def plan_steps(plan_json: Any) -> tuple[PlanStep, ...]:
    """The steps of one ``EXPLAIN (FORMAT JSON)`` result (the JSON value or its text)."""
    doc = json.loads(plan_json) if isinstance(plan_json, str | bytes) else plan_json
    root = doc[0]["Plan"]
    counter = iter(range(1, 1_000_000))
    return tuple(_fix_bitmaps(root, list(_walk(root, 0, counter))))


def _fix_bitmaps(root: Mapping[str, Any], steps: list[PlanStep]) -> list[PlanStep]:
    """Name the table of a bitmap index scan after its Bitmap Heap Scan parent."""
    tables: dict[str, str] = {}

    def visit(node: Mapping[str, Any]) -> None:
        if node.get("Node Type") == "Bitmap Heap Scan":
            for child in node.get("Plans", ()) or ():
                if child.get("Index Name"):
                    tables[str(child["Index Name"])] = str(node.get("Relation Name"))
        for child in node.get("Plans", ()) or ():
            visit(child)

    visit(root)
    fixed = []
    for step in steps:
        if step.detail.startswith("SEARCH None USING "):
            index = step.detail.rsplit(" ", 1)[-1].strip("()")
            table = tables.get(index, "?")
            if index == f"{table}_pkey":
                detail = f"SEARCH {table} USING PRIMARY KEY ({index})"
            else:
                detail = f"SEARCH {table} USING INDEX {index}"
            fixed.append(PlanStep(step.id, step.parent, detail))
        else:
            fixed.append(step)
    return fixed


class PgDialect:
    """PostgreSQL: plans from ``EXPLAIN (FORMAT JSON)``, the catalog of the current schema."""

    name = "postgresql"

    def explain(self, tx: Any, sql: str, params: Params) -> tuple[PlanStep, ...]:
        """``EXPLAIN (FORMAT JSON)`` as steps, sequential scans priced out (see above)."""
        # Inside the caller's read transaction: SET LOCAL ends with it.
        tx.query("SET LOCAL enable_seqscan = off")
        tx.query("SET LOCAL enable_sort = off")
        rows = tx.query(f"EXPLAIN (FORMAT JSON) {sql}", params)
        return plan_steps(rows[0][0])

    def table_names(self, source: _Queryable) -> list[str]:
        """The base tables of the current schema, sorted."""
        rows = source.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            "current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name"
        )
        return [str(r[0]) for r in rows]

    def index_names(self, source: _Queryable) -> set[str]:
        """Every index of the current schema (constraint-backed ones included)."""
        rows = source.query("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")
        return {str(r[0]) for r in rows}

    def columns(self, source: _Queryable, table: str) -> list[Column]:
        """``table``'s columns in declaration order, with primary-key positions."""
        rows = source.query(
            "SELECT c.column_name, c.data_type, coalesce(k.ordinal_position, 0), "
            "c.is_nullable = 'NO' "
            "FROM information_schema.columns c "
            "LEFT JOIN information_schema.table_constraints t "
            "  ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
            "  AND t.constraint_type = 'PRIMARY KEY' "
            "LEFT JOIN information_schema.key_column_usage k "
            "  ON k.constraint_name = t.constraint_name AND k.table_schema = c.table_schema "
            "  AND k.table_name = c.table_name AND k.column_name = c.column_name "
            "WHERE c.table_schema = current_schema() AND c.table_name = ? "
            "ORDER BY c.ordinal_position",
            (table,),
        )
        return [Column(str(r[0]), str(r[1]).lower(), int(r[2]), bool(r[3])) for r in rows]

    def parents(self, source: _Queryable, table: str) -> set[str]:
        """The tables ``table``'s foreign keys refer to."""
        rows = source.query(
            "SELECT DISTINCT confrelid::regclass::text FROM pg_constraint "
            "WHERE contype = 'f' AND conrelid = to_regclass(?)",
            (table,),
        )
        return {str(r[0]) for r in rows}

    def __repr__(self) -> str:
        return "<Dialect postgresql>"


#: The PostgreSQL dialect (stateless).
POSTGRESQL = PgDialect()
