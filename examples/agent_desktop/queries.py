"""SQL of ``runs`` and ``messages``, and the hot queries with the index each must use."""

from __future__ import annotations

from bastion.store.plan import HotQuery

RUN_COLUMNS = "id, title, status, created_at, updated_at"
INSERT_RUN = "INSERT INTO runs (id, title, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
GET_RUN = f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?"
LIST_RUNS = f"SELECT {RUN_COLUMNS} FROM runs ORDER BY created_at DESC, id DESC LIMIT ?"
SET_STATUS = "UPDATE runs SET status = ?, updated_at = ? WHERE id = ?"
DELETE_RUN = "DELETE FROM runs WHERE id = ?"

MESSAGE_COLUMNS = "id, run_id, role, content, created_at"
INSERT_MESSAGE = "INSERT INTO messages (run_id, role, content, created_at) VALUES (?, ?, ?, ?)"
RUN_MESSAGES = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE run_id = ? ORDER BY created_at, id"
COUNT_MESSAGES = "SELECT count(*) FROM messages WHERE run_id = ?"

HOT_QUERIES = (
    HotQuery("get_run", GET_RUN, ("r1",), index="sqlite_autoindex_runs_1"),
    HotQuery("run_messages", RUN_MESSAGES, ("r1",), index="messages_run_created"),
    HotQuery("count_messages", COUNT_MESSAGES, ("r1",), index="messages_run_created"),
)
