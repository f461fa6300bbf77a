"""``talk_projects``, ``talk_outlines``, ``runs`` and ``active_state`` (profile database)
through ``talk.repo``: what each write stores, what each read returns, in which order, and
what the tables refuse."""

from __future__ import annotations

import pytest

from bastion.errors import ConstraintViolation, NotFound, ReferenceViolation
from bastion.store import Database
from examples.pupitre.talk import repo


def new_project(db: Database, title: str) -> int:
    return db.write(lambda tx: repo.create_project(tx, title))


def test_projects_are_numbered_in_order_and_read_back_whole(profile_db: Database) -> None:
    first = profile_db.write(lambda tx: repo.create_project(tx, "Keynote"))
    second = profile_db.write(lambda tx: repo.create_project(tx, "Drill", is_training=True))
    a, b = repo.get_project(profile_db, first), repo.get_project(profile_db, second)
    assert a is not None
    assert b is not None
    assert (a.id, a.title, a.talk_number, a.is_training) == (first, "Keynote", 1, False)
    assert (b.title, b.talk_number, b.is_training) == ("Drill", 2, True)
    assert a.created_at <= b.created_at
    assert repo.get_project(profile_db, 999) is None


def test_the_talk_list_pages_newest_number_first(profile_db: Database) -> None:
    for n in range(7):
        new_project(profile_db, f"talk {n}")
    page1 = repo.list_projects(profile_db, limit=3)
    assert [p.talk_number for p in page1] == [7, 6, 5]
    page2 = repo.list_projects(profile_db, before=page1[-1].talk_number, limit=3)
    assert [p.talk_number for p in page2] == [4, 3, 2]
    page3 = repo.list_projects(profile_db, before=page2[-1].talk_number, limit=3)
    assert [p.talk_number for p in page3] == [1]
    with pytest.raises(ValueError, match="limit must be at least 1"):
        repo.list_projects(profile_db, limit=0)


def test_the_latest_outline_wins(profile_db: Database) -> None:
    pid = profile_db.write(lambda tx: repo.create_project(tx, "Keynote"))
    assert repo.latest_outline(profile_db, pid) is None
    profile_db.write(lambda tx: repo.add_outline(tx, pid, "v1"))
    newest = profile_db.write(lambda tx: repo.add_outline(tx, pid, "v2"))
    outline = repo.latest_outline(profile_db, pid)
    assert outline is not None
    assert (outline.id, outline.project_id, outline.body) == (newest, pid, "v2")


def test_runs_read_back_newest_first_with_optional_audio(profile_db: Database) -> None:
    pid = profile_db.write(lambda tx: repo.create_project(tx, "Keynote"))
    other = profile_db.write(lambda tx: repo.create_project(tx, "Other"))
    r1 = profile_db.write(lambda tx: repo.add_run(tx, pid, "artifacts/a.wav", 61.5))
    r2 = profile_db.write(lambda tx: repo.add_run(tx, pid, None))  # audio is optional (0005)
    profile_db.write(lambda tx: repo.add_run(tx, other, None))
    run = repo.get_run(profile_db, r1)
    assert run is not None
    assert (run.project_id, run.audio_path, run.duration_s, run.feedback_id) == (
        pid,
        "artifacts/a.wav",
        61.5,
        None,
    )
    assert [r.id for r in repo.runs_for_project(profile_db, pid)] == [r2, r1]
    assert [r.id for r in repo.runs_for_project(profile_db, pid, limit=1)] == [r2]
    assert repo.get_run(profile_db, 999) is None


def test_the_active_project_is_set_replaced_and_cleared(profile_db: Database) -> None:
    assert repo.active_project(profile_db) is None
    a = profile_db.write(lambda tx: repo.create_project(tx, "A"))
    b = profile_db.write(lambda tx: repo.create_project(tx, "B"))
    profile_db.write(lambda tx: repo.set_active_project(tx, a))
    profile_db.write(lambda tx: repo.set_active_project(tx, b))  # one row, replaced
    assert repo.active_project(profile_db) == b
    assert profile_db.scalar("SELECT count(*) FROM active_state") == 1
    profile_db.write(lambda tx: repo.set_active_project(tx, None))
    assert repo.active_project(profile_db) is None


def test_deleting_a_project_takes_its_outlines_and_runs(profile_db: Database) -> None:
    pid = profile_db.write(lambda tx: repo.create_project(tx, "Keynote"))
    profile_db.write(lambda tx: repo.add_outline(tx, pid, "o"))
    profile_db.write(lambda tx: repo.add_run(tx, pid, None))
    profile_db.write(lambda tx: repo.set_active_project(tx, pid))
    profile_db.write(lambda tx: repo.delete_project(tx, pid))
    assert repo.get_project(profile_db, pid) is None
    assert repo.latest_outline(profile_db, pid) is None
    assert repo.runs_for_project(profile_db, pid) == []
    assert repo.active_project(profile_db) is None  # SET NULL, not a dangling id
    with pytest.raises(NotFound):
        profile_db.write(lambda tx: repo.delete_project(tx, pid))


def test_the_tables_refuse_orphans_and_bad_values(profile_db: Database) -> None:
    with pytest.raises(ReferenceViolation):
        profile_db.write(lambda tx: repo.add_run(tx, 999, None))
    with pytest.raises(ReferenceViolation):
        profile_db.write(lambda tx: repo.add_outline(tx, 999, "o"))
    with pytest.raises(ReferenceViolation):
        profile_db.write(lambda tx: repo.set_active_project(tx, 999))
    with pytest.raises(ConstraintViolation):
        profile_db.write(lambda tx: repo.create_project(tx, None))  # type: ignore[arg-type]
    assert repo.list_projects(profile_db) == []
    assert profile_db.scalar("SELECT count(*) FROM runs") == 0
