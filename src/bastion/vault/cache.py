"""A scope's decrypted secrets kept in memory, refreshed when the vault changes (opt-in).

An application that reads the same scope over and over (seed 002's ``getAllSecrets`` of a
space, on every model call) pays, per read, the index read, the decryption of every value
(or a Secret Service round trip) and an audited read per value.
:class:`ScopeCache` reads a scope once with :meth:`Vault.get_many` and answers later reads
from memory while the scope's *stamp* (``vault_scope_stamps``, migration 0004) is the one it
read before the values:

- a change anywhere -- this process, the CLI, the daemon, another application on the same
  ``vault.db`` -- goes through ``vault_secrets``, whose triggers give the scope a new random
  stamp in the same transaction; the next read sees it and reads the values again. There is
  no time-to-live and no notification to miss: every read checks (one primary-key read).
- the stamp is read *before* the values, so a change landing between the two costs one
  extra refresh, never a stale answer.

The trade-off, for the caller to accept (hence opt-in, not :class:`Vault`'s default):

- the values of the cached scopes stay in this process's memory (as ``Secret`` objects, masked
  when printed) until :meth:`ScopeCache.clear` or the cache is dropped. A program that holds
  the secrets it uses has them in memory anyway; one that reads them once and forgets them
  should not use this.
- the audit log records the read that brought the values out of the vault (one ``get`` row
  per value, as :meth:`Vault.get_many`), not each later answer from memory: the values did not
  leave the vault again.
- a value changed *outside* bastion (an item edited with ``secret-tool`` in the keychain) does
  not move the stamp; bastion's own reads would not see such an edit in the index either
  (``bastion secrets reconcile`` does).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from bastion.vault.rules import validate_scope
from bastion.vault.secret import Secret

if TYPE_CHECKING:
    from bastion.vault import Vault

__all__ = ["ScopeCache"]


class ScopeCache:
    """Whole scopes of ``vault`` read through :meth:`Vault.get_many` and kept until their stamp
    moves. Thread-safe. ``hits`` and ``fills`` count the answers from memory and the reads of
    the vault (for tests and metrics; they never hold a value)."""

    def __init__(self, vault: Vault, *, actor: str = "app") -> None:
        self.vault = vault
        self.actor = actor
        self._lock = threading.Lock()
        self._scopes: dict[str, tuple[int | None, dict[str, Secret]]] = {}
        self.hits = 0
        self.fills = 0

    def get_all(self, scope: str) -> dict[str, Secret]:
        """Every secret of ``scope`` (``name -> Secret``), as ``vault.get_many(scope=scope)``
        would return now. A new dict each call: changing it does not change the cache."""
        stamp = self.vault.index.stamp(scope)
        held = self._scopes.get(scope)
        if held is not None and held[0] == stamp:
            self.hits += 1
            return dict(held[1])
        validate_scope(scope)
        values = self.vault.get_many(scope=scope, actor=self.actor)
        with self._lock:
            self._scopes[scope] = (stamp, values)
            self.fills += 1
        return dict(values)

    def forget(self, scope: str) -> None:
        """Drop ``scope``'s values from memory (the next read goes to the vault)."""
        with self._lock:
            self._scopes.pop(scope, None)

    def clear(self) -> None:
        """Drop every cached value from memory."""
        with self._lock:
            self._scopes.clear()

    def __len__(self) -> int:
        """How many scopes are held."""
        return len(self._scopes)

    def __repr__(self) -> str:
        return f"<ScopeCache {len(self._scopes)} scopes of {self.vault!r}>"
