"""The migration history against the code, function by function: ``plan_namespace`` (pure:
a history in, what to apply or the refusal that says what is wrong out) and the
``schema_migrations`` rows as written and read back on a real database."""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from pathlib import Path

import pytest

from bastion.__about__ import __version__
from bastion.errors import (
    MigrationChecksumMismatch,
    MigrationGap,
    MigrationOutOfOrder,
    MigrationUnknown,
)
from bastion.store import Database
from bastion.store.crypt import DatabaseKey
from bastion.store.crypt.cipher import connect
from bastion.store.migrate.history import (
    HistoryRow,
    MigrationPlan,
    _ensure_history,
    _read_history,
    _record,
    plan_namespace,
)
from bastion.store.migrations import Migration, Namespace
from tests.store.keyed import OpenDatabase

A = Migration.sql("0001_a", "CREATE TABLE a (id INTEGER PRIMARY KEY);", origin="m/0001_a.sql")
B = Migration.sql("0002_b", "CREATE TABLE b (id INTEGER PRIMARY KEY);", origin="m/0002_b.sql")
C = Migration.sql("0003_c", "CREATE TABLE c (id INTEGER PRIMARY KEY);", origin="m/0003_c.sql")
D = Migration.sql("0004_d", "CREATE TABLE d (id INTEGER PRIMARY KEY);", origin="m/0004_d.sql")
NS = Namespace("t", [A, B, C, D])

pytestmark = pytest.mark.encrypted_rerun


def row(m: Migration, previous: str | None = None, *, checksum: str | None = None) -> HistoryRow:
    return HistoryRow("t", m.id, checksum or m.checksum, 1.0, 2.0, "1.0", previous)


def chain(*migrations: Migration) -> list[HistoryRow]:
    """Rows as a straight run of the code writes them: each names the one before."""
    rows, previous = [], None
    for m in migrations:
        rows.append(row(m, previous))
        previous = m.id
    return rows


def test_a_history_row_defaults_to_applied_with_no_predecessor() -> None:
    r = HistoryRow("t", "0001_a", "c", 1.0, 2.0, "1.0")
    assert (r.previous_id, r.kind) == (None, "applied")


@pytest.mark.parametrize(
    ("history", "pending"),
    [
        ([], (A, B, C, D)),
        (chain(A), (B, C, D)),
        (chain(A, B, C), (D,)),
        (chain(A, B, C, D), ()),
    ],
)
def test_what_is_pending_is_every_unapplied_migration_in_order(
    history: Sequence[HistoryRow], pending: tuple[Migration, ...]
) -> None:
    assert plan_namespace(NS, history) == MigrationPlan(pending=pending, accepted=())


def test_an_unknown_applied_id_names_every_one_sorted_by_number() -> None:
    future = [
        *chain(A, B),
        HistoryRow("t", "10000_z", "x", 1.0, 1.0, "9.9", "9999_y"),
        HistoryRow("t", "9999_y", "x", 1.0, 1.0, "9.9", "0002_b"),
    ]
    with pytest.raises(MigrationUnknown) as info:
        plan_namespace(Namespace("t", [A, B]), future)
    assert info.value.message == (
        "database has migration t/9999_y, 10000_z applied, which this code does not know "
        "(the code's last is 0002_b): the database was migrated by a newer version"
    )
    assert info.value.details == {
        "namespace": "t",
        "ids": ["9999_y", "10000_z"],
        "migration": "10000_z",
    }


def test_an_unknown_id_in_a_namespace_with_no_migrations_says_none() -> None:
    with pytest.raises(MigrationUnknown) as info:
        plan_namespace(Namespace("t", []), chain(A))
    assert "(the code's last is none)" in info.value.message


def test_an_edited_migration_is_refused_with_both_checksums_and_how_to_accept() -> None:
    history = [*chain(A), row(B, "0001_a", checksum="old-sum"), row(C, "0002_b")]
    with pytest.raises(MigrationChecksumMismatch) as info:
        plan_namespace(NS, history)
    assert info.value.message == (
        "migration t/0002_b (m/0002_b.sql) was edited after it was applied: "
        f"applied checksum old-sum, file checksum now {B.checksum}"
    )
    assert info.value.hint == (
        "Revert the edit to m/0002_b.sql, or accept it with "
        "`bastion db migrate --accept-edited t/0002_b`."
    )
    assert info.value.details == {
        "namespace": "t",
        "migration": "0002_b",
        "file": "m/0002_b.sql",
        "applied_checksum": "old-sum",
        "current_checksum": B.checksum,
    }


@pytest.mark.parametrize("accept", [["t/0002_b"], ["0002_b"], ["x/y", "t/0002_b"]])
def test_an_accepted_edit_is_returned_with_the_checksum_it_replaces(accept: list[str]) -> None:
    history = [*chain(A), row(B, "0001_a", checksum="old-sum")]
    plan = plan_namespace(NS, history, accept_edited=accept)
    assert plan == MigrationPlan(pending=(C, D), accepted=((B, "old-sum"),))


@pytest.mark.parametrize(
    "accept",
    # A typo must accept nothing: another namespace, another id, a stray path part.
    [["other/0002_b"], ["t/0001_a"], ["0002"], ["t/"], ["t/0002_b/x"], ["t/x/0002_b"]],
)
def test_accepting_another_migration_or_namespace_accepts_nothing(accept: list[str]) -> None:
    history = [*chain(A), row(B, "0001_a", checksum="old-sum")]
    with pytest.raises(MigrationChecksumMismatch):
        plan_namespace(NS, history, accept_edited=accept)


def test_every_edited_migration_is_checked_after_an_accepted_one() -> None:
    history = [
        row(A),
        row(B, "0001_a", checksum="old-b"),
        row(C, "0002_b", checksum="old-c"),
    ]
    with pytest.raises(MigrationChecksumMismatch) as info:
        plan_namespace(NS, history, accept_edited=["t/0002_b"])
    assert info.value.details["migration"] == "0003_c"
    plan = plan_namespace(NS, history, accept_edited=["t/0002_b", "0003_c"])
    assert plan.accepted == ((B, "old-b"), (C, "old-c"))
    assert plan.pending == (D,)


def test_an_unedited_migration_is_not_reported_as_accepted() -> None:
    plan = plan_namespace(NS, chain(A, B), accept_edited=["t/0001_a", "t/0002_b"])
    assert plan.accepted == ()


def test_a_skipped_migration_the_history_names_as_a_predecessor_is_a_gap() -> None:
    # 0002 vanished from a history whose 0003 row names it as its predecessor.
    history = [row(A), row(C, "0002_b")]
    with pytest.raises(MigrationGap) as info:
        plan_namespace(NS, history)
    assert info.value.message == (
        "migration t/0002_b (m/0002_b.sql) was never applied, but 0003_c, which came after "
        "it, was: the history has a gap"
    )
    assert info.value.hint == (
        "Restore the database from a backup taken before the gap, or apply the missing change "
        "by hand and record it with `bastion db baseline`."
    )
    assert info.value.details == {
        "namespace": "t",
        "migration": "0002_b",
        "file": "m/0002_b.sql",
        "after": "0003_c",
    }


def test_a_migration_added_below_applied_ones_is_out_of_order_naming_the_next_applied() -> None:
    # 0002 was added to the code after 0001, 0003 and 0004 were applied (0003 names 0001).
    history = [row(A), row(C, "0001_a"), row(D, "0003_c")]
    with pytest.raises(MigrationOutOfOrder) as info:
        plan_namespace(NS, history)
    assert info.value.message == (
        "migration t/0002_b (m/0002_b.sql) is pending but sorts before 0003_c, which is "
        "already applied"
    )
    assert info.value.hint == "Renumber m/0002_b.sql to sort after 0004_d (the last applied id)."
    assert info.value.details == {
        "namespace": "t",
        "migration": "0002_b",
        "file": "m/0002_b.sql",
        "applied_after": "0003_c",
    }


def test_the_last_applied_id_is_the_highest_number_not_the_last_row() -> None:
    # Rows in the order a baseline may write them: the highest number first.
    history = [row(D, "0003_c"), row(A)]
    with pytest.raises(MigrationOutOfOrder) as info:
        plan_namespace(NS, history)
    assert info.value.details["migration"] == "0002_b"
    assert "after 0004_d" in info.value.hint
    # Migrations above the last applied one are simply pending.
    assert plan_namespace(NS, [row(A), row(B, "0001_a")]).pending == (C, D)


def test_the_last_applied_id_is_compared_by_number_not_as_text() -> None:
    # 9999 < 10000 as numbers, but "9999_y" > "10000_z" as text.
    y = Migration.sql("9999_y", "CREATE TABLE y (id INTEGER PRIMARY KEY);", origin="m/9999_y.sql")
    z = Migration.sql("10000_z", "CREATE TABLE z (id INTEGER PRIMARY KEY);", origin="m/z.sql")
    wide = Namespace("t", [A, B, y, z])
    history = [row(A), row(y, "0001_a"), row(z, "9999_y")]
    with pytest.raises(MigrationOutOfOrder) as info:
        plan_namespace(wide, history)
    assert info.value.hint == "Renumber m/0002_b.sql to sort after 10000_z (the last applied id)."


def test_a_predecessor_of_none_does_not_hide_a_gap_behind_a_first_row() -> None:
    # Only recorded predecessors count: the first row's None names nothing.
    history = [row(B), row(C, "0002_b")]
    with pytest.raises(MigrationOutOfOrder) as info:
        plan_namespace(NS, history)
    assert info.value.details["migration"] == "0001_a"


# --- the table ---------------------------------------------------------------------------------


@pytest.fixture
def db(open_database: OpenDatabase, tmp_path: Path) -> Generator[Database, None, None]:
    with open_database(tmp_path / "h.db") as database:
        yield database


def _has_history(path: Path, key: DatabaseKey | None) -> bool:
    conn = connect(str(path), key=key)
    try:
        return bool(
            conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE name = 'schema_migrations'"
            ).fetchall()[0][0]
        )
    finally:
        conn.close()


def test_no_history_table_reads_as_an_empty_history(db: Database) -> None:
    assert db.read(lambda tx: _read_history(tx, "t")) == []
    assert not _has_history(db.path, db.key)


def test_recorded_rows_read_back_in_the_order_written_per_namespace(db: Database) -> None:
    conn = connect(str(db.path), key=db.key)
    _ensure_history(conn)
    _ensure_history(conn)  # a second call finds it and changes nothing
    conn.close()
    before = time.time()

    def write(tx: object) -> None:
        _record(tx, "t", C, None, 5.5)  # type: ignore[arg-type]
        _record(tx, "other", A, None, 1.0)  # type: ignore[arg-type]
        _record(tx, "t", A, "0003_c", 7.25, kind="baseline")  # type: ignore[arg-type]

    db.write(write)
    after = time.time()
    rows = db.read(lambda tx: _read_history(tx, "t"))
    assert [
        (r.namespace, r.id, r.checksum, r.duration_ms, r.previous_id, r.kind) for r in rows
    ] == [
        ("t", "0003_c", C.checksum, 5.5, None, "applied"),
        ("t", "0001_a", A.checksum, 7.25, "0003_c", "baseline"),
    ]
    assert all(r.bastion_version == __version__ for r in rows)
    assert all(before <= r.applied_at <= after for r in rows)
    assert [r.id for r in db.read(lambda tx: _read_history(tx, "other"))] == ["0001_a"]


def test_ensure_history_creates_the_table_on_a_new_database(db: Database) -> None:
    conn = connect(str(db.path), key=db.key)
    _ensure_history(conn)
    conn.close()
    assert _has_history(db.path, db.key)
    assert db.read(lambda tx: _read_history(tx, "t")) == []


def test_checksums_compare_with_the_text_that_runs_on_the_dialect() -> None:
    from bastion.store.migrations import checksum_text

    lite, pg = "CREATE TABLE p (id INTEGER PRIMARY KEY);", "CREATE TABLE p (id BIGSERIAL);"
    m = Migration.sql("0001_p", sqlite=lite, postgresql=pg, origin="m/0001_p.sql")
    ns = Namespace("t", [m])
    on_pg = [HistoryRow("t", "0001_p", checksum_text(pg), 1.0, 1.0, "1.0")]
    on_lite = [HistoryRow("t", "0001_p", checksum_text(lite), 1.0, 1.0, "1.0")]
    assert plan_namespace(ns, on_pg, dialect="postgresql").pending == ()
    assert plan_namespace(ns, on_lite).pending == ()  # SQLite is the default
    # Each history is "edited" when checked against the other engine's text.
    with pytest.raises(MigrationChecksumMismatch):
        plan_namespace(ns, on_lite, dialect="postgresql")
    with pytest.raises(MigrationChecksumMismatch) as info:
        plan_namespace(ns, on_pg)
    assert info.value.details["current_checksum"] == checksum_text(lite)
