-- PostgreSQL's text of 0002_secret_purges.sql: the timestamp is DOUBLE PRECISION.
CREATE TABLE bot_secret_purges (
    bot_id TEXT PRIMARY KEY,
    requested_at DOUBLE PRECISION NOT NULL
);
