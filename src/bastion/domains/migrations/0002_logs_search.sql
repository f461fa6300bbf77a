-- core namespace, 0002: search over log messages at the size a long-running install reaches.

-- Source + level + time together (`bastion logs --service S --level error`): with only
-- (source, ts) every line of the source was read to test its level (9x slower from 100k rows).
CREATE INDEX logs_source_level_ts ON logs (source, level, ts);

-- Full-text search over messages. The trigram tokenizer indexes every 3-character run, so any
-- substring of 3 or more characters is found through the index, not by reading every row
-- (a word that is absent from 1M lines cost ~360 ms as a LIKE scan). External content: the
-- text is stored once, in logs; the index holds only trigrams and rowids. detail=none keeps
-- no positions (the index is ~1.5x the text instead of ~4x): a search asks for every trigram
-- of the text and the caller re-checks the message with LIKE, which also keeps LIKE's exact
-- meaning (ASCII case-insensitive) whatever the tokenizer folds.
CREATE VIRTUAL TABLE logs_fts USING fts5(
    message,
    content = 'logs',
    content_rowid = 'id',
    tokenize = 'trigram',
    detail = none
);

-- Kept in step by triggers, so every writer of logs (the capture batch, retention, an app's
-- own SQL) keeps the index right. An external-content index must be told the exact text a
-- row had when it is deleted; the triggers are the one place that knows it. The capture
-- inserts a batch in few statements (LogsRepo.insert_batch): FTS5 flushes its buffer at each
-- statement, so one INSERT per line would cost ~4x more.
CREATE TRIGGER logs_fts_insert AFTER INSERT ON logs BEGIN
    INSERT INTO logs_fts (rowid, message) VALUES (new.id, new.message);
END;
CREATE TRIGGER logs_fts_delete AFTER DELETE ON logs BEGIN
    INSERT INTO logs_fts (logs_fts, rowid, message) VALUES ('delete', old.id, old.message);
END;
CREATE TRIGGER logs_fts_update AFTER UPDATE OF id, message ON logs BEGIN
    INSERT INTO logs_fts (logs_fts, rowid, message) VALUES ('delete', old.id, old.message);
    INSERT INTO logs_fts (rowid, message) VALUES (new.id, new.message);
END;

-- Lines stored before this migration: indexed in one pass (~6 us a line; FTS5 builds large
-- segments at once, far cheaper than line by line).
INSERT INTO logs_fts (logs_fts) VALUES ('rebuild');
