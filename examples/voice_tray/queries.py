"""SQL of the voice_tray tables (``profiles``, ``transcriptions``) and the indexes it needs.

``HOT_QUERIES`` names each hot query with the index it must use; a test asserts every plan
(``bastion.store.plan.assert_plan``), so a schema change that turns one into a table scan fails.
"""

from __future__ import annotations

from bastion.store.plan import HotQuery

PROFILE_COLUMNS = "id, name, permissions, voice_id, allowed_commands, created_at, updated_at"
INSERT_PROFILE = (
    "INSERT INTO profiles (name, permissions, voice_id, allowed_commands, created_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
GET_PROFILE = f"SELECT {PROFILE_COLUMNS} FROM profiles WHERE id = ?"
PROFILE_BY_VOICE = f"SELECT {PROFILE_COLUMNS} FROM profiles WHERE voice_id = ?"
LIST_PROFILES = f"SELECT {PROFILE_COLUMNS} FROM profiles ORDER BY name"
UPDATE_PROFILE = (
    "UPDATE profiles SET name = ?, permissions = ?, voice_id = ?, allowed_commands = ?,"
    " updated_at = ? WHERE id = ?"
)
DELETE_PROFILE = "DELETE FROM profiles WHERE id = ?"
COUNT_PROFILES = "SELECT count(*) FROM profiles"

TRANSCRIPTION_COLUMNS = (
    "id, ts, profile_id, text, confidence, speaker_id, sent_to_n8n, success, response"
)
INSERT_TRANSCRIPTION = (
    "INSERT INTO transcriptions"
    " (ts, profile_id, text, confidence, speaker_id, sent_to_n8n, success, response)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
BY_PROFILE = (
    f"SELECT {TRANSCRIPTION_COLUMNS} FROM transcriptions WHERE profile_id = ?"
    " ORDER BY ts DESC LIMIT ?"
)
RECENT = f"SELECT {TRANSCRIPTION_COLUMNS} FROM transcriptions ORDER BY ts DESC LIMIT ? OFFSET ?"
DELETE_BEFORE = "DELETE FROM transcriptions WHERE ts < ?"
COUNT_TRANSCRIPTIONS = "SELECT count(*) FROM transcriptions"

HOT_QUERIES = (
    HotQuery("profile_by_voice", PROFILE_BY_VOICE, ("speaker_1",), index="profiles_voice_id"),
    HotQuery("transcriptions_by_profile", BY_PROFILE, (1, 50), index="transcriptions_profile_ts"),
    HotQuery("delete_transcriptions_before", DELETE_BEFORE, (0.0,), index="transcriptions_ts"),
)
