"""SQL text of the talk domain (profile database). No logic, no row mapping."""

from bastion.store.plan import HotQuery

PROJECT_COLUMNS = "id, title, talk_number, is_training, created_at"

INSERT_PROJECT = (
    "INSERT INTO talk_projects (title, is_training, created_at, talk_number) "
    "VALUES (?, ?, ?, (SELECT coalesce(max(talk_number), 0) + 1 FROM talk_projects))"
)
GET_PROJECT = f"SELECT {PROJECT_COLUMNS} FROM talk_projects WHERE id = ?"
#: Hot: the talk list, newest number first, one keyset page at a time: talks numbered below
#: ``?`` (the last number of the previous page). A range read on idx_talk_projects_number.
LIST_PROJECTS = (
    f"SELECT {PROJECT_COLUMNS} FROM talk_projects WHERE talk_number < ? "
    "ORDER BY talk_number DESC LIMIT ?"
)
DELETE_PROJECT = "DELETE FROM talk_projects WHERE id = ?"

UPSERT_OUTLINE = "INSERT INTO talk_outlines (project_id, body, updated_at) VALUES (?, ?, ?)"
#: Hot: opening a talk (idx_talk_outlines_project).
OUTLINE_FOR = (
    "SELECT id, project_id, body, updated_at FROM talk_outlines "
    "WHERE project_id = ? ORDER BY id DESC LIMIT 1"
)

RUN_COLUMNS = "id, project_id, audio_path, duration_s, feedback_id, created_at"
INSERT_RUN = "INSERT INTO runs (project_id, audio_path, duration_s, created_at) VALUES (?, ?, ?, ?)"
GET_RUN = f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?"
#: Hot: a talk's runs, newest first (idx_runs_project covers filter and order).
RUNS_FOR_PROJECT = (
    f"SELECT {RUN_COLUMNS} FROM runs WHERE project_id = ? ORDER BY created_at DESC LIMIT ?"
)
SET_ACTIVE_PROJECT = (
    "INSERT INTO active_state (key, project_id) VALUES ('current_project', ?) "
    "ON CONFLICT (key) DO UPDATE SET project_id = excluded.project_id"
)
ACTIVE_PROJECT = "SELECT project_id FROM active_state WHERE key = 'current_project'"

#: Hot queries and the index each must use (checked by tests/test_query_plans.py).
HOT = (
    HotQuery("talk list", LIST_PROJECTS, (2**62, 50), "idx_talk_projects_number"),
    HotQuery("outline of a talk", OUTLINE_FOR, (1,), "idx_talk_outlines_project"),
    HotQuery("runs of a talk", RUNS_FOR_PROJECT, (1, 50), "idx_runs_project"),
)
