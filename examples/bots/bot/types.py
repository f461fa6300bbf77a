"""The bot domain's types: what callers pass in and get back (seed 003 keeps domain types
apart from the storage code: ``boternity-types`` has no sqlx). No SQL, no driver here."""

from __future__ import annotations

import dataclasses
from typing import Literal

__all__ = ["Bot", "BotChanges", "BotStatus", "NewBot"]

BotStatus = Literal["active", "disabled", "archived"]


@dataclasses.dataclass(frozen=True, slots=True)
class NewBot:
    slug: str
    name: str
    description: str = ""
    status: BotStatus = "active"
    category: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class BotChanges:
    """A partial update: fields left ``None`` keep their value."""

    slug: str | None = None
    name: str | None = None
    description: str | None = None
    status: BotStatus | None = None
    category: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Bot:
    id: str
    slug: str
    name: str
    description: str
    status: BotStatus
    category: str | None
    version_count: int
    created_at: float
    updated_at: float
    last_active_at: float | None
