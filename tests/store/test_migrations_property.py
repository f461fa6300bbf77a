"""Property tests: for random migration sets and random recorded histories, the engine accepts
exactly the valid ones.

Valid code: every id is ``NNNN_name`` and no two share a number. Valid history: it is exactly
a prefix of the code's ordered ids, with matching checksums. Everything else must be refused
with a ``MigrationError`` (and nothing applied); valid ones must migrate to the end.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.errors import MigrationError
from bastion.store.migrations import HistoryRow, Migration, Migrator, Namespace, plan_namespace
from tests.store.keyed import OpenDatabase

pytestmark = pytest.mark.encrypted_rerun

_VALID_ID = re.compile(r"^\d{4,}_[A-Za-z0-9][A-Za-z0-9_]*$")

ids = st.one_of(
    st.builds(
        lambda n, name: f"{n:04d}_{name}",
        st.integers(0, 30),
        st.sampled_from(["a", "b", "init", "x_y"]),
    ),
    st.sampled_from(["1_short", "0001-dash", "abcd_x", "0002_", "0003_bad name", "00004_ok"]),
)


@given(st.lists(ids, max_size=8))
@settings(max_examples=300, deadline=None)
def test_namespace_accepts_exactly_well_formed_unique_ids(candidates: list[str]) -> None:
    well_formed = all(_VALID_ID.match(i) for i in candidates)
    numbers = [int(i.split("_", 1)[0]) for i in candidates if _VALID_ID.match(i)]
    valid = well_formed and len(numbers) == len(set(numbers))
    try:
        ns = Namespace(
            "p", [Migration.sql(i, f"CREATE TABLE t_{k} (x);") for k, i in enumerate(candidates)]
        )
    except ValueError:
        assert not valid
    else:
        assert valid
        assert [m.number for m in ns.migrations] == sorted(numbers)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Namespace, list[HistoryRow], bool]:
    """A namespace, a history for it (often valid, often damaged), and whether it is valid."""
    numbers = sorted(draw(st.sets(st.integers(1, 40), min_size=1, max_size=7)))
    code = [Migration.sql(f"{n:04d}_m{n}", f"CREATE TABLE m{n} (x);") for n in numbers]
    ns = Namespace("p", code)
    k = draw(st.integers(0, len(code)))
    applied = list(code[:k])
    # Damage: drop some applied ids (gaps), add ids the code lacks, edit checksums, or
    # record a later migration without its predecessors.
    if applied and draw(st.booleans()):
        applied = [m for m in applied if draw(st.booleans())]
    extra = []
    if draw(st.integers(0, 4)) == 0:
        n = draw(st.integers(1, 60).filter(lambda x: x not in numbers))
        extra.append(Migration.sql(f"{n:04d}_gone", "CREATE TABLE gone (x);"))
    if k < len(code) and draw(st.integers(0, 3)) == 0:
        applied.append(code[draw(st.integers(k, len(code) - 1))])
    edited = bool(applied) and draw(st.integers(0, 4)) == 0
    rows = []
    previous = None
    for index, m in enumerate(sorted({*applied, *extra}, key=lambda x: x.number)):
        checksum = "0" * 64 if edited and index == 0 else m.checksum
        rows.append(HistoryRow("p", m.id, checksum, 0.0, 0.0, "test", previous))
        previous = m.id
    recorded = [r.id for r in rows]
    valid = not edited and recorded == [m.id for m in code[: len(recorded)]]
    return ns, rows, valid


@given(scenarios())
@settings(max_examples=400, deadline=None)
def test_history_check_accepts_exactly_prefixes_of_the_code(
    case: tuple[Namespace, list[HistoryRow], bool],
) -> None:
    ns, rows, valid = case
    try:
        plan = plan_namespace(ns, rows)
    except MigrationError:
        assert not valid
    else:
        assert valid
        assert [m.id for m in plan.pending] == [m.id for m in ns.migrations[len(rows) :]]


@given(scenarios())
@settings(
    max_examples=40,
    deadline=None,
    # open_database holds only the run's key: sharing it across examples is what is meant.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_real_database_migrates_exactly_the_valid_histories(
    open_database: OpenDatabase,
    case: tuple[Namespace, list[HistoryRow], bool],
) -> None:
    ns, rows, valid = case
    workdir = Path(tempfile.mkdtemp(prefix="bastion-prop-"))
    db = open_database(workdir / "p.db")
    try:
        # Record the history as if those migrations had run (their tables exist too).
        def record(tx: object) -> None:
            from bastion.store import WriteTx
            from bastion.store.migrate._common import _HISTORY_DDL

            assert isinstance(tx, WriteTx)
            tx.execute(_HISTORY_DDL)
            for r in rows:
                tx.execute(f"CREATE TABLE {r.id.split('_', 1)[1]} (x)")
                tx.execute(
                    "INSERT INTO schema_migrations (namespace, id, checksum, applied_at, duration_ms, "
                    "bastion_version, previous_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        r.namespace,
                        r.id,
                        r.checksum,
                        r.applied_at,
                        r.duration_ms,
                        r.bastion_version,
                        r.previous_id,
                    ),
                )

        db.write(record)  # type: ignore[arg-type]
        before = db.query("SELECT id FROM schema_migrations ORDER BY id")
        try:
            Migrator(db).migrate([ns])
        except MigrationError:
            assert not valid
            assert db.query("SELECT id FROM schema_migrations ORDER BY id") == before
        else:
            assert valid
            (state,) = Migrator(db).status([ns])
            assert state.applied == ns.ids
            assert state.pending == ()
    finally:
        db.close()
        shutil.rmtree(workdir, ignore_errors=True)
