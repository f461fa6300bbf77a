"""SQL text of the feedback domain (profile database)."""

INSERT_FEEDBACK = "INSERT INTO auto_feedback (kind, summary, created_at) VALUES (?, ?, ?)"
LINK_RUN = "UPDATE runs SET feedback_id = ? WHERE id = ?"
LINK_ATTEMPT = "UPDATE quest_attempts SET feedback_id = ? WHERE id = ?"
INSERT_NOTE = "INSERT INTO feedback_notes (feedback_id, body) VALUES (?, ?)"
GET_FEEDBACK = "SELECT id, kind, summary, created_at FROM auto_feedback WHERE id = ?"
COUNT_FEEDBACK = "SELECT count(*) FROM auto_feedback"
