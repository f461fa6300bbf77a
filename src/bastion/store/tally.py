"""What a :class:`~bastion.store.engine.Database` counts for ``GET /metrics`` when asked to.

``Database.tally`` is None unless the daemon sets one (metrics on): the write path then
pays one ``is None`` test per commit. With a tally, a commit on the mutex path (one unit,
the common case) pays two clock reads around its COMMIT and ``commit_s.observe``, inlined
in the engine (a ``bisect`` and two adds), nothing more: the commit count is the latency histogram's count,
and the units-per-commit histogram is observed on the group path only -- every other
commit is one unit, added in when read (:meth:`StoreTally.units_per_commit`). ``bench/store_write.py --metrics`` compares on vs off.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from bastion._tally import SIZE_BOUNDS, Buckets

__all__ = ["StoreTally"]


@dataclasses.dataclass(slots=True)
class StoreTally:
    """Commits of one open database, counted by its writer."""

    #: Seconds each COMMIT statement took; its count is the transactions committed.
    commit_s: Buckets = dataclasses.field(default_factory=Buckets)
    #: Write units per transaction committed by the group path (see :meth:`units_per_commit`).
    group_size: Buckets = dataclasses.field(default_factory=lambda: Buckets(SIZE_BOUNDS))
    #: BEGIN refused after the busy timeout (another process held the write lock).
    busy: int = 0
    #: In-process writers that waited past the fairness bound for the writer lock.
    starved: int = 0
    #: Checkpoints run by bastion (the WAL archiver's, the watchdog's, retention's), by mode.
    #: SQLite's own autocheckpoint (no archiver running) is not seen.
    checkpoints: Counter[str] = dataclasses.field(default_factory=Counter)

    @property
    def commits(self) -> int:
        """Transactions committed (a group commit is one)."""
        return self.commit_s.count

    def checkpointed(self, mode: str) -> None:
        """One checkpoint of ``mode`` ran."""
        self.checkpoints[mode] += 1

    def committed(self, seconds: float, units: int) -> None:
        """One transaction of ``units`` write units committed in ``seconds`` (group path)."""
        self.commit_s.observe(seconds)
        self.group_size.observe(units)

    def units_per_commit(self) -> Buckets:
        """Write units per committed transaction, every commit: the group path's
        observations plus one unit for each other commit (a copy, read at scrape)."""
        sizes = self.group_size
        counts = list(sizes.counts)
        singles = max(0, self.commits - sum(counts))
        out = Buckets(sizes.bounds)
        counts[0] += singles  # 1 <= the first bound
        out.counts = counts
        out.total = sizes.total + singles
        return out
