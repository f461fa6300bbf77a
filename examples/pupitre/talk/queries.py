"""SQL text of the talk domain (profile database). No logic, no row mapping."""

PROJECT_COLUMNS = "id, title, talk_number, is_training, created_at"

INSERT_PROJECT = (
    "INSERT INTO talk_projects (title, is_training, created_at, talk_number) "
    "VALUES (?, ?, ?, (SELECT coalesce(max(talk_number), 0) + 1 FROM talk_projects))"
)
GET_PROJECT = f"SELECT {PROJECT_COLUMNS} FROM talk_projects WHERE id = ?"
#: Hot: the talk list, newest number first (idx_talk_projects_number).
LIST_PROJECTS = f"SELECT {PROJECT_COLUMNS} FROM talk_projects ORDER BY talk_number DESC LIMIT ?"
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
