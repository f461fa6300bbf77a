"""The contract every value backend meets, and the records the vault returns.

A backend stores *values* only; the index (``vault.db``: timestamps, versions, fingerprints)
belongs to the vault and is the same for every backend. The vault calls a backend inside the
index's write transaction (``tx``), so a backend that keeps its values in ``vault.db`` (the
encrypted file) writes them atomically with the index row, and one that keeps them elsewhere
(the OS keychain) makes its change last, just before the commit.

One conformance suite (``tests/vault/conformance.py``) runs against every backend.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from bastion.store import WriteTx

__all__ = ["Backend", "RecordRef", "SecretMeta", "item_key", "split_item_key"]


@dataclasses.dataclass(frozen=True, slots=True)
class RecordRef:
    """Which record a value belongs to; encrypted backends bind all three into the AAD."""

    scope: str
    name: str
    version: int


@dataclasses.dataclass(frozen=True, slots=True)
class SecretMeta:
    """What the index knows about a secret. Never the value."""

    scope: str
    name: str
    backend: str
    created_at: float
    updated_at: float
    last_used_at: float | None
    size: int
    version: int
    fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        """The metadata as JSON-ready data."""
        return dataclasses.asdict(self)


def item_key(scope: str, name: str) -> str:
    """The backend-side key of a record: ``scope/name`` (neither may contain ``/``)."""
    return f"{scope}/{name}"


def split_item_key(key: str) -> tuple[str, str] | None:
    """``(scope, name)`` from a keychain item's ``scope/name`` key, or None if it is not one."""
    scope, sep, name = key.partition("/")
    return (scope, name) if sep and scope and name and "/" not in name else None


class Backend(Protocol):
    """Stores values by (scope, name). Errors are ``VaultError`` subclasses, never raw ones."""

    #: Stable name recorded in the index (``keychain``, ``encrypted-file``).
    kind: str

    def write_value(self, tx: WriteTx, ref: RecordRef, value: str) -> None:
        """Store ``value`` for ``ref`` (replacing any older version), inside ``tx``."""
        ...

    def read_value(self, ref: RecordRef) -> str | None:
        """The value stored for ``ref``; ``None`` if the backend has none."""
        ...

    def delete_value(self, tx: WriteTx, scope: str, name: str) -> bool:
        """Remove the value; ``True`` if there was one."""
        ...

    def stored_keys(self) -> set[tuple[str, str]] | None:
        """Every (scope, name) the backend holds a value for (reconcile's other side), or
        ``None`` where the backend cannot enumerate (keychains other than the Secret
        Service): reconcile then checks index rows one by one and reports orphans unknown."""
        ...

    def fingerprint_key(self) -> bytes:
        """The per-install HMAC key for fingerprints, kept as safely as the values."""
        ...

    def describe(self) -> dict[str, Any]:
        """Which backend this is and why it was chosen (for ``status`` and ``doctor``)."""
        ...

    def close(self) -> None:
        """Forget the keys held in memory; the backend is not used afterwards."""
