"""Typed access to ``profiles`` and ``transcriptions``: frozen dataclasses, never raw rows.

The seed's ``AppDatabase`` methods for its own tables, on bastion's store: writes go through
the single writer (``db.write``), a duplicate profile name is ``Conflict`` and an update or
delete of a missing id is ``NotFound`` (both from the store's error translation).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from bastion.store import Row, WriteTx
from bastion.store.repo import Repo, expect_changed, from_json, to_json
from examples.voice_tray import queries as q

__all__ = ["Profile", "ProfilesRepo", "Transcription", "TranscriptionsRepo"]


@dataclasses.dataclass(frozen=True, slots=True)
class Profile:
    id: int
    name: str
    permissions: dict[str, Any]
    voice_id: str | None
    allowed_commands: tuple[str, ...] | None
    created_at: float
    updated_at: float


def _profile(row: Row) -> Profile:
    commands = from_json(row[4])
    return Profile(
        id=int(row[0]),
        name=str(row[1]),
        permissions=from_json(row[2]) or {},
        voice_id=row[3],
        allowed_commands=tuple(commands) if commands is not None else None,
        created_at=float(row[5]),
        updated_at=float(row[6]),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Transcription:
    id: int
    ts: float
    profile_id: int | None
    text: str
    confidence: float | None
    speaker_id: str | None
    sent_to_n8n: bool
    success: bool | None
    response: str | None


def _transcription(row: Row) -> Transcription:
    return Transcription(
        id=int(row[0]),
        ts=float(row[1]),
        profile_id=row[2],
        text=str(row[3]),
        confidence=row[4],
        speaker_id=row[5],
        sent_to_n8n=bool(row[6]),
        success=None if row[7] is None else bool(row[7]),
        response=row[8],
    )


class ProfilesRepo(Repo):
    __slots__ = ()

    def insert(
        self,
        name: str,
        permissions: dict[str, Any],
        *,
        voice_id: str | None = None,
        allowed_commands: Sequence[str] | None = None,
    ) -> Profile:
        """A new profile; a taken name (or voice id) raises ``Conflict``."""
        now = time.time()
        commands = list(allowed_commands) if allowed_commands is not None else None
        params = (
            name,
            to_json(permissions, field="permissions"),
            voice_id,
            to_json(commands, field="allowed_commands"),
            now,
            now,
        )
        new_id: int = self.db.write(lambda tx: tx.insert(q.INSERT_PROFILE, params))
        return Profile(new_id, name, permissions, voice_id, _tuple(commands), now, now)

    def get(self, profile_id: int) -> Profile | None:
        row = self.db.query_one(q.GET_PROFILE, (profile_id,))
        return None if row is None else _profile(row)

    def by_voice_id(self, voice_id: str) -> Profile | None:
        row = self.db.query_one(q.PROFILE_BY_VOICE, (voice_id,))
        return None if row is None else _profile(row)

    def list_all(self) -> list[Profile]:
        return [_profile(r) for r in self.db.query(q.LIST_PROFILES)]

    def update(self, profile: Profile) -> Profile:
        """Store ``profile``'s fields; ``NotFound`` if its id is gone."""
        now = time.time()
        commands = list(profile.allowed_commands) if profile.allowed_commands is not None else None
        params = (
            profile.name,
            to_json(profile.permissions, field="permissions"),
            profile.voice_id,
            to_json(commands, field="allowed_commands"),
            now,
            profile.id,
        )

        def run(tx: WriteTx) -> None:
            expect_changed(tx.execute(q.UPDATE_PROFILE, params), f"profile {profile.id}")

        self.db.write(run)
        return dataclasses.replace(profile, updated_at=now)

    def delete(self, profile_id: int) -> None:
        """Delete; its transcriptions stay with ``profile_id`` NULL. ``NotFound`` if gone."""
        self.db.write(
            lambda tx: expect_changed(
                tx.execute(q.DELETE_PROFILE, (profile_id,)), f"profile {profile_id}"
            )
        )

    def count(self) -> int:
        return int(self.db.scalar(q.COUNT_PROFILES))


def _tuple(items: list[str] | None) -> tuple[str, ...] | None:
    return tuple(items) if items is not None else None


class TranscriptionsRepo(Repo):
    __slots__ = ()

    def insert(
        self,
        text: str,
        *,
        profile_id: int | None = None,
        confidence: float | None = None,
        speaker_id: str | None = None,
        sent_to_n8n: bool = False,
        success: bool | None = None,
        response: str | None = None,
        ts: float | None = None,
    ) -> Transcription:
        """Record one transcription; an unknown ``profile_id`` raises ``ReferenceViolation``."""
        stamp = time.time() if ts is None else ts
        params = (
            stamp,
            profile_id,
            text,
            confidence,
            speaker_id,
            int(sent_to_n8n),
            None if success is None else int(success),
            response,
        )
        new_id: int = self.db.write(lambda tx: tx.insert(q.INSERT_TRANSCRIPTION, params))
        return Transcription(
            new_id, stamp, profile_id, text, confidence, speaker_id, sent_to_n8n, success, response
        )

    def by_profile(self, profile_id: int, limit: int = 50) -> list[Transcription]:
        """The seed's ``get_transcriptions_by_profile``: newest first, at most ``limit``."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        return [_transcription(r) for r in self.db.query(q.BY_PROFILE, (profile_id, limit))]

    def recent(self, limit: int = 100, offset: int = 0) -> list[Transcription]:
        return [_transcription(r) for r in self.db.query(q.RECENT, (limit, offset))]

    def delete_before(self, ts: float) -> int:
        """The seed's ``delete_transcriptions_before``. Destructive; returns rows deleted."""
        deleted: int = self.db.write(lambda tx: tx.execute(q.DELETE_BEFORE, (ts,)))
        return deleted

    def count(self) -> int:
        return int(self.db.scalar(q.COUNT_TRANSCRIPTIONS))
