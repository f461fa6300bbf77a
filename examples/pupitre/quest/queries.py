"""SQL text of the quest domain (profile database)."""

from bastion.store.plan import HotQuery

LIST_QUESTS = "SELECT id, title, difficulty FROM quests ORDER BY difficulty, id"
INSERT_ATTEMPT = "INSERT INTO quest_attempts (quest_id, score, created_at) VALUES (?, ?, ?)"
ATTEMPT_COLUMNS = "id, quest_id, score, feedback_id, created_at"
GET_ATTEMPT = f"SELECT {ATTEMPT_COLUMNS} FROM quest_attempts WHERE id = ?"
#: Hot: a quest's history, newest first (idx_quest_attempts_quest covers filter and order).
ATTEMPTS_FOR_QUEST = (
    f"SELECT {ATTEMPT_COLUMNS} FROM quest_attempts WHERE quest_id = ? "
    "ORDER BY created_at DESC LIMIT ?"
)

#: Hot queries and the index each must use (checked by tests/test_query_plans.py).
HOT = (
    HotQuery(
        "attempts of a quest", ATTEMPTS_FOR_QUEST, ("warmup-60s", 50), "idx_quest_attempts_quest"
    ),
)
