"""``quests`` and ``quest_attempts`` (profile database) through ``quest.repo``."""

from __future__ import annotations

import pytest

from bastion.errors import ReferenceViolation
from bastion.store import Database
from examples.pupitre.quest import repo

BUILT_IN = ["warmup-60s", "no-fillers", "pause-power", "elevator"]


def test_the_built_in_quests_list_by_difficulty_then_id(profile_db: Database) -> None:
    quests = repo.list_quests(profile_db)
    assert [(q.id, q.difficulty) for q in quests] == [
        ("warmup-60s", 1),
        ("no-fillers", 2),
        ("pause-power", 2),
        ("elevator", 3),
    ]
    assert all(q.title for q in quests)


def test_attempts_read_back_whole_newest_first_per_quest(profile_db: Database) -> None:
    a1 = profile_db.write(lambda tx: repo.add_attempt(tx, "warmup-60s", 0.5))
    a2 = profile_db.write(lambda tx: repo.add_attempt(tx, "warmup-60s", None))
    profile_db.write(lambda tx: repo.add_attempt(tx, "elevator", 1.0))
    got = repo.get_attempt(profile_db, a1)
    assert got is not None
    assert (got.quest_id, got.score, got.feedback_id) == ("warmup-60s", 0.5, None)
    assert [a.id for a in repo.attempts_for_quest(profile_db, "warmup-60s")] == [a2, a1]
    assert [a.id for a in repo.attempts_for_quest(profile_db, "warmup-60s", limit=1)] == [a2]
    assert repo.attempts_for_quest(profile_db, "no-fillers") == []
    assert repo.get_attempt(profile_db, 999) is None


def test_an_attempt_at_an_unknown_quest_is_refused(profile_db: Database) -> None:
    with pytest.raises(ReferenceViolation):
        profile_db.write(lambda tx: repo.add_attempt(tx, "no-such-quest", 1.0))
    assert profile_db.scalar("SELECT count(*) FROM quest_attempts") == 0
