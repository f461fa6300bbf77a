"""SQL text of the pack domain (profile database)."""

INSERT_REVIEW = "INSERT INTO peer_reviews (run_id, reviewer, body, created_at) VALUES (?, ?, ?, ?)"
REVIEWS_FOR_RUN = (
    "SELECT id, run_id, reviewer, body, created_at FROM peer_reviews WHERE run_id = ? ORDER BY id"
)
