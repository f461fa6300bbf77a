"""``auto_feedback`` and ``feedback_notes``, and the feedback links on ``runs`` and
``quest_attempts`` (profile database), through ``feedback.repo``."""

from __future__ import annotations

import pytest

from bastion.errors import ConstraintViolation, NotFound, ReferenceViolation
from bastion.store import Database, WriteTx
from examples.pupitre.feedback import repo
from examples.pupitre.quest import repo as quest
from examples.pupitre.talk import repo as talk


def test_insert_then_get_and_count(profile_db: Database) -> None:
    assert repo.count(profile_db) == 0
    fid = profile_db.write(lambda tx: repo.insert(tx, "run", "good pace"))
    got = repo.get(profile_db, fid)
    assert got is not None
    assert (got.id, got.kind, got.summary) == (fid, "run", "good pace")
    assert got.created_at > 0
    assert repo.count(profile_db) == 1
    assert repo.get(profile_db, 999) is None


def test_linking_sets_the_run_and_attempt_feedback(profile_db: Database) -> None:
    pid = profile_db.write(lambda tx: talk.create_project(tx, "Keynote"))
    run_id = profile_db.write(lambda tx: talk.add_run(tx, pid, None))
    attempt_id = profile_db.write(lambda tx: quest.add_attempt(tx, "elevator", 0.9))
    fr = profile_db.write(lambda tx: repo.insert(tx, "run", "r"))
    fa = profile_db.write(lambda tx: repo.insert(tx, "attempt", "a"))
    profile_db.write(lambda tx: repo.link_run(tx, run_id, fr))
    profile_db.write(lambda tx: repo.link_attempt(tx, attempt_id, fa))
    run = talk.get_run(profile_db, run_id)
    attempt = quest.get_attempt(profile_db, attempt_id)
    assert run is not None
    assert attempt is not None
    assert (run.feedback_id, attempt.feedback_id) == (fr, fa)


def test_a_link_to_nothing_rolls_back_the_feedback_with_it(profile_db: Database) -> None:
    """The seed's run_analyze fix at table level: insert + link in one unit; a link that
    touches no row is NotFound and no unlinked feedback row remains."""

    def analyze_run(tx: WriteTx) -> None:
        repo.link_run(tx, 999, repo.insert(tx, "run", "x"))

    def analyze_attempt(tx: WriteTx) -> None:
        repo.link_attempt(tx, 999, repo.insert(tx, "attempt", "x"))

    for unit in (analyze_run, analyze_attempt):
        with pytest.raises(NotFound):
            profile_db.write(unit)
    assert repo.count(profile_db) == 0


def test_notes_belong_to_feedback_and_go_with_it(profile_db: Database) -> None:
    fid = profile_db.write(lambda tx: repo.insert(tx, "run", "s"))
    profile_db.write(lambda tx: repo.add_note(tx, fid, "first"))
    profile_db.write(lambda tx: repo.add_note(tx, fid, "second"))
    assert profile_db.query(
        "SELECT body FROM feedback_notes WHERE feedback_id = ? ORDER BY id", (fid,)
    ) == [("first",), ("second",)]
    with pytest.raises(ReferenceViolation):
        profile_db.write(lambda tx: repo.add_note(tx, 999, "orphan"))
    profile_db.write(lambda tx: tx.execute("DELETE FROM auto_feedback WHERE id = ?", (fid,)))
    assert profile_db.scalar("SELECT count(*) FROM feedback_notes") == 0


def test_a_kind_outside_run_and_attempt_is_refused(profile_db: Database) -> None:
    with pytest.raises(ConstraintViolation):
        profile_db.write(lambda tx: repo.insert(tx, "other", "s"))  # type: ignore[arg-type]
    assert repo.count(profile_db) == 0
