"""Helpers for the archive tests: a numbered-row writer, restores to a file, row reads."""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Sequence
from pathlib import Path

import apsw

from bastion.config import ArchiveConfig, StoreConfig
from bastion.store import Database
from bastion.store.archive import PointInTimeRestore, build_at, plan_restore
from bastion.store.crypt import DatabaseKey
from bastion.store.crypt.cipher import connect

SCHEMA = "CREATE TABLE r (n INTEGER PRIMARY KEY, t REAL NOT NULL, pad TEXT NOT NULL)"


@dataclasses.dataclass(frozen=True)
class Row:
    """A committed row: its number and the instants around its commit."""

    n: int
    before: float  # just before BEGIN
    after: float  # just after COMMIT returned


def open_db(path: Path, key: DatabaseKey | None = None) -> Database:
    db = Database.open(path, StoreConfig(), name=path.stem, key=key)
    db.write(lambda tx: tx.execute(f"{SCHEMA.replace('TABLE', 'TABLE IF NOT EXISTS')}"))
    return db


def fast_config(**kw: object) -> ArchiveConfig:
    values: dict[str, object] = {"interval_s": 0.2, "checkpoint_frames": 200}
    values.update(kw)
    return ArchiveConfig(**values)  # type: ignore[arg-type]


def write_rows(
    db: Database, seconds: float, *, start: int = 1, gap_s: float = 0.003, pad: int = 200
) -> list[Row]:
    """Commit rows ``start, start+1, ...`` one per transaction for ``seconds``."""
    rows = []
    n = start
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        before = time.time()
        db.write(
            lambda tx, n=n, t=before: tx.execute(
                "INSERT INTO r VALUES (?, ?, ?)", (n, t, "x" * pad)
            )
        )
        rows.append(Row(n, before, time.time()))
        n += 1
        time.sleep(gap_s)  # leaves gaps between commits: instants no commit straddles
    return rows


def clear_instants(rows: Sequence[Row], count: int, rng: random.Random) -> list[float]:
    """``count`` random instants inside the run that fall between two commits."""
    lo, hi = rows[0].after, rows[-1].after
    found: list[float] = []
    while len(found) < count:
        t = rng.uniform(lo, hi)
        if not any(r.before <= t <= r.after for r in rows):
            found.append(t)
    return found


def restore_rows(
    archive: Path, db_name: str, at: float, dest: Path, key: DatabaseKey | None = None
) -> tuple[list[int], PointInTimeRestore]:
    result = build_at(plan_restore(archive, db_name, at), dest, key=key)
    return read_rows(dest, key), result


def read_rows(path: Path, key: DatabaseKey | None = None) -> list[int]:
    conn = connect(str(path), flags=apsw.SQLITE_OPEN_READONLY, key=key)
    try:
        return [int(r[0]) for r in conn.execute("SELECT n FROM r ORDER BY n")]
    finally:
        conn.close()


def wait_for_base(archive: Path, db_name: str) -> None:
    """Until the newest generation has a base (the archiver takes it on its thread)."""
    from bastion.store.archive import timeline
    from tests.helpers import wait_until

    wait_until(
        lambda: (t := timeline(archive, db_name)) and t[-1].restorable_from is not None,
        what=f"a base snapshot of {db_name}",
    )
