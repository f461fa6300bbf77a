"""Size samples of one database over time: file size, WAL size and free bytes, every few minutes.

The daemon's scheduler calls :func:`record_sample` (job ``db-sample``); the dashboard draws
the last day from :func:`read_samples`. Samples live in a small JSON file next to the last
check's (``run/samples-<db>.json``), never in the database itself: writing them there would
grow the very file and WAL they measure, and a sample is diagnostics, not data to back up.

Kept cheap on purpose: one ``stat`` of the files and one ``PRAGMA freelist_count`` per
sample, and a bounded file. :func:`thin` is the retention policy (pure, no clock): every
sample of the last :data:`FULL_S`, one per hour back to :data:`KEEP_S`, nothing older. At a
5-minute interval that is at most ~290 + ~145 samples (a few tens of KiB), rewritten
atomically through :func:`bastion._fs.atomic_write`. One process writes it: the daemon (its
single-instance lock); readers see the old file or the new one, never a mix.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion._fs import atomic_write, ensure_private_dir

if TYPE_CHECKING:
    from bastion.store.engine import Database

__all__ = [
    "FULL_S",
    "INTERVAL_S",
    "KEEP_S",
    "SizeSample",
    "read_samples",
    "record_sample",
    "samples_path",
    "take_sample",
    "thin",
]

log = logging.getLogger("bastion.store.samples")

#: How often the daemon samples (the scheduler job's interval).
INTERVAL_S = 300.0
#: Samples younger than this are all kept.
FULL_S = 86_400.0
#: Samples older than this are dropped; between FULL_S and KEEP_S one per hour is kept.
KEEP_S = 7 * 86_400.0
_BUCKET_S = 3600.0


@dataclasses.dataclass(frozen=True, slots=True)
class SizeSample:
    """One sample: wall-clock time (Unix seconds) and sizes in bytes."""

    ts: float
    size_bytes: int
    wal_bytes: int
    free_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """The stored (and served) form: ``{ts, size_bytes, wal_bytes, free_bytes}``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> SizeSample | None:
        """A sample from its stored form, or None for anything malformed (skipped, not fatal)."""
        if not isinstance(data, dict):
            return None
        try:
            ts = float(data["ts"])
            sizes = [int(data[k]) for k in ("size_bytes", "wal_bytes", "free_bytes")]
        except (KeyError, TypeError, ValueError):
            return None
        if not math.isfinite(ts) or min(sizes) < 0:
            return None
        return cls(ts, *sizes)


def samples_path(run_dir: Path, db_name: str) -> Path:
    """Where the samples of database ``db_name`` are kept (``run/samples-<db>.json``)."""
    return run_dir / f"samples-{db_name}.json"


def thin(samples: Iterable[SizeSample], now: float) -> list[SizeSample]:
    """The samples to keep as of ``now``, oldest first (see the module docstring)."""
    kept: list[SizeSample] = []
    seen_buckets: set[int] = set()
    for sample in sorted(samples, key=lambda s: s.ts):
        age = now - sample.ts
        if age > KEEP_S:
            continue
        if age > FULL_S:
            bucket = int(sample.ts // _BUCKET_S)
            if bucket in seen_buckets:
                continue
            seen_buckets.add(bucket)
        kept.append(sample)
    return kept


def read_samples(run_dir: Path, db_name: str, *, since: float | None = None) -> list[SizeSample]:
    """Stored samples (from ``since`` on), oldest first; an absent or unreadable file is []."""
    path = samples_path(run_dir, db_name)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as err:
        # Diagnostics only: a damaged file costs the chart its history, nothing else.
        log.warning("ignoring unreadable size samples %s: %s", path, err)
        return []
    items = raw.get("samples") if isinstance(raw, dict) else None
    if not isinstance(items, list):
        log.warning("ignoring size samples %s: no list of samples in it", path)
        return []
    out = [s for s in map(SizeSample.from_dict, items) if s is not None]
    out.sort(key=lambda s: s.ts)
    return [s for s in out if since is None or s.ts >= since]


def take_sample(db: Database, now: float) -> SizeSample:
    """Measure ``db`` now (read-only: a stat of its files and one pragma on a reader)."""
    sizes = db.file_sizes()
    free_pages, page_size = db.read(
        lambda tx: (tx.scalar("PRAGMA freelist_count"), tx.scalar("PRAGMA page_size"))
    )
    return SizeSample(now, sizes["db"], sizes["wal"], int(free_pages) * int(page_size))


def record_sample(db: Database, run_dir: Path, *, now: float | None = None) -> SizeSample:
    """Take one sample of ``db`` and add it to its file (thinned, written atomically)."""
    stamp = time.time() if now is None else now
    sample = take_sample(db, stamp)
    kept = thin([*read_samples(run_dir, db.name), sample], stamp)
    ensure_private_dir(run_dir)
    payload = {"db": db.name, "interval_s": INTERVAL_S, "samples": [s.to_dict() for s in kept]}
    atomic_write(samples_path(run_dir, db.name), json.dumps(payload, separators=(",", ":")))
    return sample
