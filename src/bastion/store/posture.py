"""A database's posture: the file header checked before SQLite touches it, the pragmas set and
then read back at open (SQLite silently ignores some, so only the read-back counts)."""

from __future__ import annotations

import dataclasses
import time

import apsw

from bastion.config import StoreConfig
from bastion.errors import StorePostureError
from bastion.store.header import check_header

__all__ = ["Posture", "apply_posture", "check_header", "read_posture"]

_SYNC_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


@dataclasses.dataclass(frozen=True, slots=True)
class Posture:
    """Pragmas as read back from SQLite after being set (never as requested)."""

    journal_mode: str
    synchronous: str
    foreign_keys: bool
    busy_timeout_ms: int
    wal_autocheckpoint: int
    sqlite_version: str


def read_posture(conn: apsw.Connection) -> Posture:
    """The pragmas as SQLite reports them now (read-only)."""
    return Posture(
        journal_mode=str(conn.pragma("journal_mode")).upper(),
        synchronous=_SYNC_NAMES.get(int(conn.pragma("synchronous")), "?"),
        foreign_keys=bool(conn.pragma("foreign_keys")),
        busy_timeout_ms=int(conn.pragma("busy_timeout")),
        wal_autocheckpoint=int(conn.pragma("wal_autocheckpoint")),
        sqlite_version=apsw.sqlite_lib_version(),
    )


def apply_posture(conn: apsw.Connection, cfg: StoreConfig, path: str) -> None:
    """Set the pragmas, then read each back; SQLite silently ignores some (WAL on a filesystem
    without shared memory stays in another mode), so only the read-back counts."""
    conn.setbusytimeout(cfg.busy_timeout_ms)
    deadline = time.monotonic() + cfg.busy_timeout_ms / 1000
    delay = 0.001
    while True:
        try:
            # Touch the schema first so a non-database with a valid-looking header fails here.
            conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
            got_mode = str(conn.pragma("journal_mode", "wal")).lower()
            break
        except apsw.BusyError:
            # Several processes creating the same new file at once: switching it from the
            # rollback journal to WAL needs an exclusive lock, and SQLite answers BUSY at once
            # (no busy handler) to the one that would deadlock. Retry, with backoff, until
            # the configured busy timeout -- callers must never see "database is locked".
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
    conn.pragma("synchronous", cfg.synchronous)
    conn.pragma("foreign_keys", 1)
    wanted = {
        "journal_mode": ("wal", got_mode),
        "synchronous": (cfg.synchronous, _SYNC_NAMES.get(int(conn.pragma("synchronous")), "?")),
        "foreign_keys": ("1", str(int(conn.pragma("foreign_keys")))),
        "busy_timeout": (str(cfg.busy_timeout_ms), str(int(conn.pragma("busy_timeout")))),
    }
    for pragma, (want, got) in wanted.items():
        if want.lower() != got.lower():
            raise StorePostureError(
                f"{path}: PRAGMA {pragma} is {got!r} after setting it to {want!r}",
                pragma=pragma,
                wanted=want,
                got=got,
            )
