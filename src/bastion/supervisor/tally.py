"""What the supervisor counts per service for ``GET /metrics`` (plain ints, read at scrape).

Transitions are counted as they are made (restarts are ``backoff -> starting``, breaker
trips are transitions into ``open``), each probe run's latency goes into a bucket count per
(role, kind), and the log capture's line counts are folded in when a run's capture closes.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from bastion._tally import Buckets

__all__ = ["ServiceTally", "ServiceView"]


@dataclasses.dataclass(slots=True)
class ServiceTally:
    """The counters of one service since the supervisor opened."""

    #: (from, to) state values -> transitions made.
    transitions: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)
    #: (role, kind) -> seconds each probe run took.
    probe_s: dict[tuple[str, str], Buckets] = dataclasses.field(default_factory=dict)
    #: Output lines of runs whose capture has closed: read, stored, dropped.
    lines_read: int = 0
    lines_stored: int = 0
    lines_dropped: int = 0

    def probed(self, role: str, kind: str, seconds: float) -> None:
        """One probe run took ``seconds``."""
        buckets = self.probe_s.get((role, kind))
        if buckets is None:
            buckets = self.probe_s[(role, kind)] = Buckets()
        buckets.observe(seconds)

    @property
    def restarts(self) -> int:
        """Starts after a failure's backoff delay."""
        return self.transitions[("backoff", "starting")]

    @property
    def breaker_trips(self) -> int:
        """Times the circuit breaker opened."""
        return sum(n for (_old, new), n in self.transitions.items() if new == "open")


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceView:
    """One service as a scrape sees it: its state, child pid and counters (live run's lines
    included)."""

    name: str
    state: str
    pid: int | None
    tally: ServiceTally
    lines_read: int
    lines_stored: int
    lines_dropped: int
