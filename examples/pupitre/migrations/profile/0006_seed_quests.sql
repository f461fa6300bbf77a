-- Built-in quests every profile starts with. INSERT OR IGNORE: a user who already has a quest
-- with one of these ids keeps theirs.
INSERT OR IGNORE INTO quests (id, title, difficulty) VALUES
    ('warmup-60s', 'Talk for 60 seconds without notes', 1),
    ('no-fillers', 'Two minutes with no filler words', 2),
    ('pause-power', 'Use three deliberate pauses', 2),
    ('elevator', 'Pitch your talk in 30 seconds', 3);
