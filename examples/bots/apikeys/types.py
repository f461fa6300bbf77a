"""The API key domain's types (no SQL here; see ``repo.py`` for the storage)."""

from __future__ import annotations

import dataclasses

__all__ = ["ApiKey"]


@dataclasses.dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as stored: never the key itself, only its prefix (to recognise it)."""

    id: str
    name: str
    key_prefix: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None
