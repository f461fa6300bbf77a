"""The seed's ``AppDatabase`` on bastion: one WAL SQLite file, five tables, maintenance.

``settings``, ``logs`` and ``activity`` are bastion's built-in tables (``bastion.domains``);
``profiles`` and ``transcriptions`` are this app's namespace ``voice_tray``
(``migrations/0001_profiles_transcriptions.sql``). Posture (WAL, ``synchronous=NORMAL``,
foreign keys on, busy timeout) is set and verified by bastion when the file opens; every write
goes through its single writer, reads through its reader pool.

Differences from the seed, on purpose: ``get_logs`` pages with a cursor (stable while new
lines arrive) instead of an offset; ``get_logs_by_level`` takes a minimum level (``error``
includes ``critical``); ``vacuum`` returns what it reclaimed.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from bastion.app import Home
from bastion.domains.activity import Activity
from bastion.domains.logs import LogRecord, normalize_level
from bastion.store.migrations import Namespace
from bastion.store.repo import Page
from bastion.store.retention import RetentionPolicy, VacuumResult, reclaim_space, run_retention
from bastion.store.stats import check_database
from examples.voice_tray.repo import Profile, ProfilesRepo, Transcription, TranscriptionsRepo

__all__ = ["NAMESPACE", "AppDatabase", "DatabaseStatistics", "namespace"]

NAMESPACE = "voice_tray"
#: Settings key holding how many days of transcriptions retention keeps (default 90).
TRANSCRIPTIONS_DAYS_KEY = "voice_tray.retention.transcriptions_days"


def namespace() -> Namespace:
    return Namespace.from_package(NAMESPACE, "examples.voice_tray.migrations")


@dataclasses.dataclass(frozen=True, slots=True)
class DatabaseStatistics:
    """The seed's ``DatabaseStatistics``."""

    log_count: int
    profile_count: int
    transcription_count: int
    activity_count: int
    file_size_bytes: int

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class AppDatabase:
    """The app's data on an open :class:`bastion.app.Home` (which owns the file)."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.db = home.db
        self.profiles = ProfilesRepo(home.db)
        self.transcriptions = TranscriptionsRepo(home.db)

    @classmethod
    def attach(cls, home: Home) -> AppDatabase:
        """Apply the ``voice_tray`` migrations (backup first, checks after) and wrap ``home``."""
        home.migrator().migrate([namespace()])
        return cls(home)

    # --- settings (built-in) -----------------------------------------------------------

    def save_setting(self, key: str, value: Any) -> None:
        self.home.settings.set(key, value)

    def load_setting(self, key: str, default: Any = None) -> Any:
        return self.home.settings.get(key, default)

    # --- logs (built-in) --------------------------------------------------------------

    def insert_log(
        self, level: str, component: str, message: str, metadata: dict[str, Any] | None = None
    ) -> None:
        record = LogRecord(
            ts=time.time(),
            level=normalize_level(level),
            source=component,
            stream="app",
            message=message,
            fields=dict(metadata) if metadata else None,
        )
        self.home.logs.insert_batch([record])

    def get_logs(self, limit: int = 100, cursor: str | None = None) -> Page[LogRecord]:
        """Newest first; pass the page's ``next_cursor`` for the next page."""
        return self.home.logs.query(limit=limit, cursor=cursor, newest_first=True)

    def get_logs_by_level(self, level: str, limit: int = 50) -> list[LogRecord]:
        return list(self.home.logs.query(level=level, limit=limit, newest_first=True).items)

    def get_component_logs(self, component: str, limit: int = 200) -> list[LogRecord]:
        """Lines of one component (e.g. the speech server's captured output), oldest first."""
        return list(self.home.logs.query(source=component, limit=limit).items)

    def delete_logs_before(self, ts: float) -> int:
        return self.home.logs.delete_before(ts)

    # --- profiles, transcriptions (this app's namespace) ------------------------------

    def insert_profile(
        self,
        name: str,
        permissions: dict[str, Any],
        *,
        voice_id: str | None = None,
        allowed_commands: list[str] | None = None,
    ) -> Profile:
        return self.profiles.insert(
            name, permissions, voice_id=voice_id, allowed_commands=allowed_commands
        )

    def get_profile_by_voice_id(self, voice_id: str) -> Profile | None:
        return self.profiles.by_voice_id(voice_id)

    def insert_transcription(self, text: str, **fields: Any) -> Transcription:
        return self.transcriptions.insert(text, **fields)

    def get_transcriptions_by_profile(
        self, profile_id: int, limit: int = 50
    ) -> list[Transcription]:
        return self.transcriptions.by_profile(profile_id, limit)

    def delete_transcriptions_before(self, ts: float) -> int:
        return self.transcriptions.delete_before(ts)

    # --- activity (built-in) ----------------------------------------------------------

    def record_activity(
        self,
        action: str,
        *,
        profile_id: int | None = None,
        details: dict[str, Any] | None = None,
        success: bool = True,
    ) -> Activity:
        actor = f"profile:{profile_id}" if profile_id is not None else "app"
        return self.home.activity.record(
            actor, action, details={**(details or {}), "success": success}
        )

    def get_activity(self, profile_id: int | None = None, limit: int = 50) -> list[Activity]:
        actor = f"profile:{profile_id}" if profile_id is not None else None
        return list(self.home.activity.query(actor=actor, limit=limit).items)

    # --- maintenance ------------------------------------------------------------------

    def get_statistics(self) -> DatabaseStatistics:
        counts = self.db.read(
            lambda tx: [
                int(tx.scalar(f"SELECT count(*) FROM {table}"))
                for table in ("logs", "profiles", "transcriptions", "activity")
            ]
        )
        sizes = self.db.file_sizes()
        logs, profiles, transcriptions, activity = counts
        return DatabaseStatistics(
            log_count=logs,
            profile_count=profiles,
            transcription_count=transcriptions,
            activity_count=activity,
            file_size_bytes=sizes["db"] + sizes["wal"],
        )

    def integrity_check(self) -> bool:
        """Full ``integrity_check`` plus ``foreign_key_check``; True when both are clean."""
        return bool(check_database(self.db, full=True)["ok"])

    def vacuum(self) -> VacuumResult:
        """Rewrite the file to give free pages back (runs outside any transaction)."""
        return reclaim_space(self.db, force=True)

    def prune(self, *, dry_run: bool = False) -> dict[str, Any]:
        """Retention: bastion's tables per ``[retention]`` plus transcriptions older than the
        ``voice_tray.retention.transcriptions_days`` setting (default 90), in batches, then
        reclaim space past the configured threshold."""
        days = float(self.load_setting(TRANSCRIPTIONS_DAYS_KEY, 90))
        policy = RetentionPolicy("transcriptions", "ts", max_age_days=days or None)
        return run_retention(self.db, self.home.config, extra=[policy], dry_run=dry_run)
