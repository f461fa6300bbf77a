"""What a :class:`~bastion.store.engine.Database` counts for ``GET /metrics`` when asked to.

``Database.tally`` is None unless the daemon sets one (metrics on): the write path then
pays one ``is None`` test per commit. With a tally it pays two clock reads and a bucket
count (``bench/store_write.py --metrics`` compares the two in one run).
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_left
from collections import Counter

from bastion._tally import SIZE_BOUNDS, Buckets

__all__ = ["StoreTally"]


@dataclasses.dataclass(slots=True)
class StoreTally:
    """Commits of one open database, counted by its writer."""

    #: Transactions committed (a group commit is one).
    commits: int = 0
    #: Seconds each COMMIT statement took.
    commit_s: Buckets = dataclasses.field(default_factory=Buckets)
    #: Write units per committed transaction (1 on the mutex path).
    group_size: Buckets = dataclasses.field(default_factory=lambda: Buckets(SIZE_BOUNDS))
    #: BEGIN refused after the busy timeout (another process held the write lock).
    busy: int = 0
    #: In-process writers that waited past the fairness bound for the writer lock.
    starved: int = 0
    #: Checkpoints run by bastion (the WAL archiver's, the watchdog's, retention's), by mode.
    #: SQLite's own autocheckpoint (no archiver running) is not seen.
    checkpoints: Counter[str] = dataclasses.field(default_factory=Counter)

    def checkpointed(self, mode: str) -> None:
        """One checkpoint of ``mode`` ran."""
        self.checkpoints[mode] += 1

    def committed(self, seconds: float, units: int) -> None:
        """One transaction of ``units`` write units committed in ``seconds``."""
        self.commits += 1
        self.commit_s.observe(seconds)
        self.group_size.observe(units)

    def committed_one(self, seconds: float) -> None:
        """:meth:`committed` for one unit (the mutex path), inlined: it runs on every write."""
        self.commits += 1
        buckets = self.commit_s
        buckets.counts[bisect_left(buckets.bounds, seconds)] += 1
        buckets.total += seconds
        buckets.count += 1
        sizes = self.group_size
        sizes.counts[0] += 1  # 1 <= the first bound
        sizes.total += 1
        sizes.count += 1
