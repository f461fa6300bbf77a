ALTER TABLE talk_projects ADD COLUMN is_training INTEGER NOT NULL DEFAULT 0 CHECK (is_training IN (0, 1));
