"""Plain counters a hot path can afford: an int increment, a bucket count.

Metrics (``GET /metrics``) read these at scrape time through ``prometheus_client`` custom
collectors (bastion/api/metrics.py); the store, the supervisor and the API only count. A
:class:`Buckets` is a histogram's state without the library's lock and label lookup: the
GIL makes ``counts[i] += 1`` good enough for a monitoring figure (a lost increment under a
thread switch is possible in theory and harmless), and it costs a ``bisect`` and two adds
(the count is the sum of the slots, added up when read: a scrape, not every observation).
"""

from __future__ import annotations

import bisect
import dataclasses
from collections import Counter

__all__ = ["LATENCY_BOUNDS_S", "SIZE_BOUNDS", "Buckets", "VaultTally"]

#: Latency buckets in seconds, 50 µs to 10 s (commits, probes, requests, keychain calls).
LATENCY_BOUNDS_S = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: Count buckets (units in one group commit).
SIZE_BOUNDS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0)


class Buckets:
    """A histogram's counts: ``counts[i]`` observations ≤ ``bounds[i]`` and above the bound
    before it (the last slot: above every bound), their ``total`` and ``count``."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BOUNDS_S) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    @property
    def count(self) -> int:
        """Observations so far."""
        return sum(self.counts)

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, cumulative count)`` pairs, ``+Inf`` last: what a histogram family takes."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            out.append((repr(bound), float(running)))
        out.append(("+Inf", float(running + self.counts[-1])))
        return out


# The vault's counters are kept here, beside the others, rather than in bastion.vault: the
# daemon makes one at its start (for GET /metrics) and importing the vault package pulls in
# cryptography and argon2 (~30 ms) that nothing needs before the vault is first used
# (issue 22 §7). bastion.vault.tally re-exports it.
@dataclasses.dataclass(slots=True)
class VaultTally:
    """The counters of one open vault (:meth:`bastion.vault.Vault.attach_tally`)."""

    #: backend kind -> values read (a ``get_many`` counts each value).
    gets: Counter[str] = dataclasses.field(default_factory=Counter)
    #: backend kind -> values stored.
    sets: Counter[str] = dataclasses.field(default_factory=Counter)
    #: error class name -> vault operations that raised it.
    errors: Counter[str] = dataclasses.field(default_factory=Counter)
    #: Seconds each call into the OS keychain took (timeouts included, at their deadline).
    keychain_s: Buckets = dataclasses.field(default_factory=Buckets)
