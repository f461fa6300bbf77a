-- voice_tray, 0001: the seed's app tables. settings, logs and activity are bastion's built-in
-- tables (namespace core); what is TonnyTray's own lives here.

-- profiles: multi-user support. permissions and allowed_commands are JSON.
CREATE TABLE profiles (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
    permissions TEXT NOT NULL CHECK (json_valid(permissions)),
    voice_id TEXT,
    allowed_commands TEXT CHECK (allowed_commands IS NULL OR json_valid(allowed_commands)),
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
-- get_profile_by_voice_id (speaker diarization picks the profile by voice)
CREATE UNIQUE INDEX profiles_voice_id ON profiles (voice_id) WHERE voice_id IS NOT NULL;

-- transcriptions: speech-to-text history. A deleted profile keeps its history, unassigned.
CREATE TABLE transcriptions (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    profile_id INTEGER REFERENCES profiles (id) ON DELETE SET NULL,
    text TEXT NOT NULL,
    confidence REAL CHECK (confidence IS NULL OR confidence BETWEEN 0 AND 1),
    speaker_id TEXT,
    sent_to_n8n INTEGER NOT NULL DEFAULT 0 CHECK (sent_to_n8n IN (0, 1)),
    success INTEGER CHECK (success IS NULL OR success IN (0, 1)),
    response TEXT
);
-- "Indexed timestamps": history pages and delete_transcriptions_before
CREATE INDEX transcriptions_ts ON transcriptions (ts);
-- get_transcriptions_by_profile(profile_id, limit), newest first
CREATE INDEX transcriptions_profile_ts ON transcriptions (profile_id, ts);
