"""The runs/messages namespace: migration v1, the foreign key with ON DELETE CASCADE, atomic
multi-row writes, ISO 8601 TEXT timestamps, and the indexes the hot queries use."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from bastion.app import Home
from bastion.config import Config
from bastion.errors import ConstraintViolation, NotFound, ReferenceViolation
from bastion.store.plan import assert_indexes, assert_plan, namespace_indexes
from examples.agent_desktop.queries import HOT_QUERIES
from examples.agent_desktop.repo import RunsRepo, namespace

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")


@pytest.fixture
def home(cfg: Config) -> Iterator[Home]:
    home = Home.init(cfg)
    home.migrator().migrate([namespace()])
    yield home
    home.close()


@pytest.fixture
def runs(home: Home) -> RunsRepo:
    return RunsRepo(home.db)


def test_migration_v1_is_recorded_with_its_checksum(home: Home) -> None:
    (state,) = home.migrator().status([namespace()])
    assert state.applied == ("0001_create_initial_tables",)
    assert state.pending == ()
    tables = {r[0] for r in home.db.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "messages"} <= tables
    # a pre-migration backup was taken before v1 ran
    assert list(home.config.backups_dir.glob("pre-migrate-agent_desktop-0001_*.db"))


def test_run_with_messages_in_one_transaction(runs: RunsRepo) -> None:
    run, added = runs.create_run("t", [("system", "be brief"), ("user", "hi")])
    assert [m.role for m in runs.messages(run.id)] == ["system", "user"]
    assert [m.id for m in added] == [m.id for m in runs.messages(run.id)]
    assert ISO.match(run.created_at)
    assert all(ISO.match(m.created_at) for m in added)


def test_a_failing_message_rolls_back_the_whole_run(runs: RunsRepo, home: Home) -> None:
    with pytest.raises(ConstraintViolation):
        runs.create_run("t", [("user", "ok"), ("robot", "not a role")], run_id="doomed")  # type: ignore[list-item]
    assert runs.get_run("doomed") is None
    assert home.db.scalar("SELECT count(*) FROM messages") == 0


def test_message_for_an_unknown_run_is_refused(runs: RunsRepo) -> None:
    with pytest.raises(ReferenceViolation):
        runs.add_message("no-such-run", "user", "hello")


def test_deleting_a_run_cascades_to_its_messages(runs: RunsRepo, home: Home) -> None:
    keep, _ = runs.create_run("keep", [("user", "a")])
    gone, _ = runs.create_run("gone", [("user", "b"), ("assistant", "c")])
    runs.delete_run(gone.id)
    assert runs.get_run(gone.id) is None
    assert home.db.scalar("SELECT count(*) FROM messages WHERE run_id = ?", (gone.id,)) == 0
    assert [m.content for m in runs.messages(keep.id)] == ["a"]
    assert home.db.query("PRAGMA foreign_key_check") == []
    with pytest.raises(NotFound):
        runs.delete_run(gone.id)
    with pytest.raises(NotFound):
        runs.set_status(gone.id, "completed")


def test_timestamps_are_iso_text(runs: RunsRepo, home: Home) -> None:
    run, _ = runs.create_run("t", [("user", "x")])
    kinds = home.db.query_one(
        "SELECT typeof(r.created_at), typeof(m.created_at) FROM runs r JOIN messages m "
        "ON m.run_id = r.id WHERE r.id = ?",
        (run.id,),
    )
    assert kinds == ("text", "text")


def test_list_runs_newest_first_and_status(runs: RunsRepo) -> None:
    first, _ = runs.create_run("first", run_id="a")
    runs.create_run("second", run_id="b")
    runs.set_status(first.id, "failed")
    listed = runs.list_runs()
    assert [r.id for r in listed] == ["b", "a"]
    assert listed[1].status == "failed"
    with pytest.raises(ValueError, match="limit"):
        runs.list_runs(0)


def test_hot_queries_use_their_indexes(home: Home) -> None:
    assert_indexes(home.db, namespace_indexes(namespace()), namespace="agent_desktop")
    for hot in HOT_QUERIES:
        assert_plan(home.db, hot.sql, hot.params, index=hot.index)
