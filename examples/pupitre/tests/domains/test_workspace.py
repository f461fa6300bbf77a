"""``workspaces`` (global database) through ``workspace.repo``: what each write stores, what
each read returns, and what the table refuses."""

from __future__ import annotations

import pytest

from bastion.errors import Conflict, ConstraintViolation, NotFound
from bastion.store import Database, WriteTx
from examples.pupitre.workspace import repo


def add(db: Database, wid: str) -> None:
    db.write(lambda tx: repo.insert(tx, wid, wid.upper(), f"{wid}.db"))


def switch(db: Database, wid: str) -> None:
    """The app's switch, as one unit: every workspace off, then ``wid`` on."""

    def unit(tx: WriteTx) -> None:
        repo.deactivate_all(tx)
        repo.activate(tx, wid)

    db.write(unit)


def test_insert_then_get_and_list_return_every_column(global_db: Database) -> None:
    global_db.write(lambda tx: repo.insert(tx, "main", "Main", "profiles/main.db"))
    global_db.write(lambda tx: repo.insert(tx, "work", "Work", "profiles/work.db"))
    got = repo.get(global_db, "main")
    assert got is not None
    assert (got.id, got.name, got.db_file, got.is_active, got.last_opened_at) == (
        "main",
        "Main",
        "profiles/main.db",
        False,
        None,
    )
    assert got.created_at > 0
    assert [w.id for w in repo.list_all(global_db)] == ["main", "work"]  # creation order
    assert repo.get(global_db, "nope") is None
    assert repo.active(global_db) is None


def test_activate_is_exclusive_and_stamps_last_opened(global_db: Database) -> None:
    for wid in ("a1", "b2"):
        add(global_db, wid)

    switch(global_db, "a1")
    active = repo.active(global_db)
    assert active is not None
    assert active.id == "a1"
    assert active.last_opened_at is not None
    switch(global_db, "b2")
    assert [(w.id, w.is_active) for w in repo.list_all(global_db)] == [
        ("a1", False),
        ("b2", True),
    ]
    # The schema, not the code, keeps one active workspace: a second one is refused.
    with pytest.raises(Conflict):
        global_db.write(lambda tx: repo.activate(tx, "a1"))
    assert repo.active(global_db) == repo.get(global_db, "b2")


def test_fallback_is_the_most_recently_opened_other_workspace(global_db: Database) -> None:
    for wid in ("a1", "b2", "c3"):
        add(global_db, wid)
    assert global_db.read(lambda tx: repo.fallback_for(tx, "a1")) == "c3"  # none opened: newest
    for wid in ("b2", "a1"):
        switch(global_db, wid)
    assert global_db.read(lambda tx: repo.fallback_for(tx, "a1")) == "b2"
    assert global_db.read(lambda tx: repo.fallback_for(tx, "b2")) == "a1"


def test_zero_row_steps_are_not_found_and_change_nothing(global_db: Database) -> None:
    global_db.write(lambda tx: repo.insert(tx, "main", "Main", "main.db"))
    with pytest.raises(NotFound):
        global_db.write(lambda tx: repo.activate(tx, "ghost"))

    def delete_both(tx: WriteTx) -> None:
        repo.delete(tx, "main")
        repo.delete(tx, "ghost")

    with pytest.raises(NotFound):
        global_db.write(delete_both)
    assert [w.id for w in repo.list_all(global_db)] == ["main"]  # the unit rolled back whole
    global_db.write(lambda tx: repo.delete(tx, "main"))
    assert repo.list_all(global_db) == []


@pytest.mark.parametrize(
    ("wid", "name", "db_file", "error"),
    [
        ("Bad Id", "x", "x.db", ConstraintViolation),  # ids are lower-case letters and digits
        ("", "x", "x.db", ConstraintViolation),
        ("ok", "", "x.db", ConstraintViolation),  # a name is required
        ("main", "again", "y.db", Conflict),  # the primary key
        ("other", "x", "main.db", Conflict),  # one workspace per file
    ],
)
def test_the_table_refuses_bad_rows(
    global_db: Database, wid: str, name: str, db_file: str, error: type[Exception]
) -> None:
    global_db.write(lambda tx: repo.insert(tx, "main", "Main", "main.db"))
    with pytest.raises(error):
        global_db.write(lambda tx: repo.insert(tx, wid, name, db_file))
    assert [w.id for w in repo.list_all(global_db)] == ["main"]
