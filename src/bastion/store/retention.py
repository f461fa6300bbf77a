"""Retention: delete old rows in bounded batches, then give the space back.

A prune never holds the write lock for long: each batch of ``batch_rows`` deletes is its own
write unit, so other writers' units slot in between batches (the writer thread serves them
in order). Rows go by age (a timestamp column older than ``max_age_days``) and by count (the
oldest beyond ``max_rows``). After the deletes, when free pages pass
``vacuum_freelist_ratio`` of the file, the space is reclaimed: ``incremental_vacuum`` when the
database has ``auto_vacuum = INCREMENTAL`` (bounded, in steps), else a full ``VACUUM`` (runs
outside any transaction and rewrites the file; only when asked for or past the threshold),
followed by a ``wal_checkpoint(TRUNCATE)``: in WAL mode the file only shrinks when a checkpoint
copies the compacted pages back, and the WAL would otherwise keep the new copy's size.

Timestamps may be stored as Unix seconds, Unix milliseconds, or ISO-8601 text; the column's
stored type decides how the cutoff is expressed. Tables that do not exist are skipped and
reported, so an app can declare policies for tables a later migration adds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from bastion.config import RetentionConfig

if TYPE_CHECKING:
    from bastion.config import Config
    from bastion.store.engine import Database, WriteTx

__all__ = [
    "PruneResult",
    "RetentionPolicy",
    "VacuumResult",
    "default_policies",
    "prune",
    "reclaim_space",
    "run_retention",
]


@dataclasses.dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Keep rows of ``table`` newer than ``max_age_days`` and at most ``max_rows`` of them.

    ``None`` (or 0) switches a limit off. ``ts_column`` orders rows by age.
    """

    table: str
    ts_column: str = "ts"
    max_age_days: float | None = None
    max_rows: int | None = None

    def __post_init__(self) -> None:
        for name in (self.table, self.ts_column):
            if not name or '"' in name or "\x00" in name:
                raise ValueError(f"invalid table/column name {name!r} in a retention policy")


@dataclasses.dataclass(frozen=True, slots=True)
class PruneResult:
    """What pruning one table did (or would do, on a dry run)."""

    table: str
    deleted_by_age: int
    deleted_by_count: int
    batches: int
    skipped: str | None = None
    dry_run: bool = False

    @property
    def deleted(self) -> int:
        """Rows deleted by age and by count together."""
        return self.deleted_by_age + self.deleted_by_count


@dataclasses.dataclass(frozen=True, slots=True)
class VacuumResult:
    """Pages and free pages before and after reclaiming space, the mode used, and the bytes
    of the file and its WAL (what the filesystem got back)."""

    mode: str  # "none", "incremental", "full"
    freelist_before: int
    freelist_after: int
    page_count_before: int
    page_count_after: int
    #: Bytes of the database file and its ``-wal`` before and after, read from the files.
    file_bytes_before: int = 0
    file_bytes_after: int = 0
    wal_bytes_before: int = 0
    wal_bytes_after: int = 0
    #: A reader (another process) kept the closing checkpoint from finishing: the file
    #: shrinks at the next complete checkpoint instead (autocheckpoint or the WAL watchdog).
    checkpoint_busy: bool = False


def default_policies(cfg: RetentionConfig) -> list[RetentionPolicy]:
    """bastion's own tables (domains: logs, activity, events) from ``[retention]``."""
    return [
        RetentionPolicy("logs", "ts", cfg.logs_days or None, cfg.logs_max_rows or None),
        RetentionPolicy("activity", "ts", cfg.activity_days or None, None),
        RetentionPolicy("events", "ts", cfg.events_days or None, None),
    ]


def _q(name: str) -> str:
    return f'"{name}"'


def _cutoff(db: Database, policy: RetentionPolicy, now: float) -> Any:
    """The cutoff in the column's own representation, from a sample of its values."""
    assert policy.max_age_days is not None
    sample = db.query_one(
        f"SELECT typeof({_q(policy.ts_column)}), {_q(policy.ts_column)} FROM {_q(policy.table)} "
        f"WHERE {_q(policy.ts_column)} IS NOT NULL LIMIT 1"
    )
    seconds = now - policy.max_age_days * 86400
    if sample is None:
        return seconds
    kind, value = sample
    if kind == "text":
        stamp = dt.datetime.fromtimestamp(seconds, dt.UTC)
        # Match the stored shape: "2026-01-02T03:04:05..." or "2026-01-02 03:04:05...".
        sep = " " if len(str(value)) > 10 and str(value)[10] == " " else "T"
        return stamp.strftime(f"%Y-%m-%d{sep}%H:%M:%S")
    if isinstance(value, int | float) and value > 1e11:
        return seconds * 1000  # milliseconds
    return seconds


def prune(
    db: Database,
    policies: Iterable[RetentionPolicy],
    *,
    batch_rows: int = 2000,
    dry_run: bool = False,
    now: float | None = None,
) -> list[PruneResult]:
    """DESTRUCTIVE (unless ``dry_run``): delete rows past each policy, in batches."""
    if batch_rows < 1:
        raise ValueError("batch_rows must be at least 1")
    wall = time.time() if now is None else now
    tables = {str(r[0]) for r in db.query("SELECT name FROM sqlite_schema WHERE type='table'")}
    results = []
    for policy in policies:
        if policy.table not in tables:
            results.append(PruneResult(policy.table, 0, 0, 0, "table does not exist", dry_run))
            continue
        columns = {str(r[1]) for r in db.query(f"PRAGMA table_info({_q(policy.table)})")}
        if policy.ts_column not in columns:
            results.append(
                PruneResult(policy.table, 0, 0, 0, f"no column {policy.ts_column!r}", dry_run)
            )
            continue
        results.append(_prune_one(db, policy, batch_rows, dry_run, wall))
    return results


def _prune_one(
    db: Database, policy: RetentionPolicy, batch_rows: int, dry_run: bool, now: float
) -> PruneResult:
    t, c = _q(policy.table), _q(policy.ts_column)
    by_age = by_count = batches = 0
    if policy.max_age_days:
        cutoff = _cutoff(db, policy, now)
        if dry_run:
            by_age = int(db.scalar(f"SELECT count(*) FROM {t} WHERE {c} < ?", (cutoff,)))
        else:
            sql = (
                f"DELETE FROM {t} WHERE rowid IN "
                f"(SELECT rowid FROM {t} WHERE {c} < ? LIMIT {int(batch_rows)})"
            )
            while True:
                # One batch per write unit: other writers get the lock between batches.
                def batch(tx: WriteTx, s: str = sql, v: Any = cutoff) -> int:
                    return tx.execute(s, (v,))

                n = db.write(batch)
                batches += 1
                by_age += n
                if n < batch_rows:
                    break
    if policy.max_rows:
        total = int(db.scalar(f"SELECT count(*) FROM {t}"))
        excess = max(0, total - policy.max_rows - (by_age if dry_run else 0))
        if dry_run:
            by_count = excess
        while excess > 0 and not dry_run:
            take = min(batch_rows, excess)
            sql = (
                f"DELETE FROM {t} WHERE rowid IN "
                f"(SELECT rowid FROM {t} ORDER BY {c}, rowid LIMIT {int(take)})"
            )

            def unit(tx: WriteTx, s: str = sql) -> int:
                return tx.execute(s)

            n = db.write(unit)
            batches += 1
            by_count += n
            excess -= n
            if n == 0:
                break
    return PruneResult(policy.table, by_age, by_count, batches, None, dry_run)


def reclaim_space(
    db: Database, *, freelist_ratio: float = 0.25, force: bool = False, step_pages: int = 1000
) -> VacuumResult:
    """Give free pages back to the filesystem when they pass ``freelist_ratio`` of the file.

    ``incremental_vacuum`` in steps of ``step_pages`` (each its own unit) when the database
    is in incremental auto-vacuum mode; otherwise a full ``VACUUM`` (outside a transaction;
    it rewrites the whole file and needs as much free disk again). Then a
    ``wal_checkpoint(TRUNCATE)``, so the space really goes back while the database stays open.
    """
    from bastion.store.wal import checkpoint  # wal imports the engine

    sizes0 = db.file_sizes()
    free0 = int(db.scalar("PRAGMA freelist_count"))
    pages0 = int(db.scalar("PRAGMA page_count"))
    auto = int(db.scalar("PRAGMA auto_vacuum"))
    if not force and (pages0 == 0 or free0 / pages0 < freelist_ratio):
        return VacuumResult(
            "none",
            free0,
            free0,
            pages0,
            pages0,
            sizes0["db"],
            sizes0["db"],
            sizes0["wal"],
            sizes0["wal"],
        )
    if auto == 2:  # INCREMENTAL
        mode = "incremental"
        while int(db.scalar("PRAGMA freelist_count")) > 0:
            before = int(db.scalar("PRAGMA freelist_count"))

            def step(tx: WriteTx) -> None:
                tx.execute(f"PRAGMA incremental_vacuum({int(step_pages)})")

            db.run_outside_transaction(step)
            if int(db.scalar("PRAGMA freelist_count")) >= before:
                break
    else:
        mode = "full"
        db.run_outside_transaction(lambda tx: tx.execute("VACUUM"))
    # In WAL mode both write the smaller database into the WAL: the file keeps its old size
    # (and the WAL grows by the new one) until a checkpoint copies the pages back and cuts
    # the file to its new page count. TRUNCATE does that and empties the WAL too. Readers of
    # this process hold no snapshot between reads; one in another process may keep it busy
    # for up to busy_timeout, and then the space comes back at the next full checkpoint.
    done = checkpoint(db, "TRUNCATE")
    sizes1 = db.file_sizes()
    return VacuumResult(
        mode,
        free0,
        int(db.scalar("PRAGMA freelist_count")),
        pages0,
        int(db.scalar("PRAGMA page_count")),
        sizes0["db"],
        sizes1["db"],
        sizes0["wal"],
        sizes1["wal"],
        done.busy,
    )


def run_retention(
    db: Database,
    cfg: Config,
    *,
    extra: Iterable[RetentionPolicy] = (),
    dry_run: bool = False,
) -> dict[str, Any]:
    """One tick of the daemon's retention schedule: prune bastion's and the app's tables,
    then reclaim space past the threshold. Returns a JSON-ready summary."""
    results = prune(
        db,
        [*default_policies(cfg.retention), *extra],
        batch_rows=cfg.retention.batch_rows,
        dry_run=dry_run,
    )
    vacuum = None
    if not dry_run:
        vacuum = reclaim_space(db, freelist_ratio=cfg.retention.vacuum_freelist_ratio)
    return {
        "dry_run": dry_run,
        "tables": {
            r.table: {
                "deleted": r.deleted,
                "by_age": r.deleted_by_age,
                "by_count": r.deleted_by_count,
                "batches": r.batches,
                "skipped": r.skipped,
            }
            for r in results
        },
        "vacuum": dataclasses.asdict(vacuum) if vacuum else None,
    }
