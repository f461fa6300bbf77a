"""What a :class:`~bastion.vault.Vault` counts for ``GET /metrics`` when given a tally.

Reads and writes by the backend that served them, errors by their class, and the time of each
call into the OS keychain (the slow, sometimes prompting, part of a vault operation).
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from bastion._tally import Buckets

__all__ = ["VaultTally"]


@dataclasses.dataclass(slots=True)
class VaultTally:
    """The counters of one open vault."""

    #: backend kind -> values read (a ``get_many`` counts each value).
    gets: Counter[str] = dataclasses.field(default_factory=Counter)
    #: backend kind -> values stored.
    sets: Counter[str] = dataclasses.field(default_factory=Counter)
    #: error class name -> vault operations that raised it.
    errors: Counter[str] = dataclasses.field(default_factory=Counter)
    #: Seconds each call into the OS keychain took (timeouts included, at their deadline).
    keychain_s: Buckets = dataclasses.field(default_factory=Buckets)
