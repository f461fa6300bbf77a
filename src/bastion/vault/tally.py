"""What a :class:`~bastion.vault.Vault` counts for ``GET /metrics`` when given a tally.

Reads and writes by the backend that served them, errors by their class, and the time of each
call into the OS keychain (the slow, sometimes prompting, part of a vault operation). The
class itself lives in :mod:`bastion._tally`, so the daemon can make one without importing
the vault.
"""

from __future__ import annotations

from bastion._tally import VaultTally

__all__ = ["VaultTally"]
