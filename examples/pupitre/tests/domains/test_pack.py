"""``peer_reviews`` (profile database) through ``pack.repo``."""

from __future__ import annotations

import pytest

from bastion.errors import ReferenceViolation
from bastion.store import Database
from examples.pupitre.pack import repo
from examples.pupitre.talk import repo as talk


def test_reviews_read_back_whole_in_insertion_order_per_run(profile_db: Database) -> None:
    pid = profile_db.write(lambda tx: talk.create_project(tx, "Keynote"))
    run_id = profile_db.write(lambda tx: talk.add_run(tx, pid, None))
    other = profile_db.write(lambda tx: talk.add_run(tx, pid, None))
    r1 = profile_db.write(lambda tx: repo.insert_review(tx, run_id, "ana", "Slow down."))
    r2 = profile_db.write(lambda tx: repo.insert_review(tx, run_id, "bo", "Great ask."))
    profile_db.write(lambda tx: repo.insert_review(tx, other, "cy", "elsewhere"))
    reviews = repo.reviews_for_run(profile_db, run_id)
    assert [(r.id, r.run_id, r.reviewer, r.body) for r in reviews] == [
        (r1, run_id, "ana", "Slow down."),
        (r2, run_id, "bo", "Great ask."),
    ]
    assert all(r.created_at > 0 for r in reviews)
    assert repo.reviews_for_run(profile_db, 999) == []


def test_a_review_of_no_run_is_refused_and_reviews_go_with_their_run(
    profile_db: Database,
) -> None:
    with pytest.raises(ReferenceViolation):
        profile_db.write(lambda tx: repo.insert_review(tx, 999, "ana", "x"))
    pid = profile_db.write(lambda tx: talk.create_project(tx, "Keynote"))
    run_id = profile_db.write(lambda tx: talk.add_run(tx, pid, None))
    profile_db.write(lambda tx: repo.insert_review(tx, run_id, "ana", "x"))
    profile_db.write(lambda tx: talk.delete_project(tx, pid))  # project -> runs -> reviews
    assert repo.reviews_for_run(profile_db, run_id) == []
