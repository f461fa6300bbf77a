"""The soul domain's types: a stored version, and the difference between two (seed 003's plan
01-06: versioning, integrity checks, rollback, diff). No SQL here."""

from __future__ import annotations

import dataclasses
import hashlib

__all__ = ["SoulDiff", "SoulVersion", "content_hash"]


def content_hash(content: str) -> str:
    """SHA-256 of the content's UTF-8 bytes, hex: what ``soul_versions.hash`` holds."""
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class SoulVersion:
    id: int
    bot_id: str
    version: int
    content: str
    hash: str
    message: str | None
    created_at: float

    @property
    def intact(self) -> bool:
        """The stored hash still matches the stored content (the seed's integrity check)."""
        return content_hash(self.content) == self.hash

    def __repr__(self) -> str:  # a soul can be long: the repr names it, never dumps it
        return (
            f"SoulVersion(bot_id={self.bot_id!r}, version={self.version}, "
            f"hash={self.hash[:12]}…, {len(self.content)} chars)"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class SoulDiff:
    """What changed from version ``old`` to version ``new`` of a bot's soul."""

    bot_id: str
    old: int
    new: int
    #: A unified diff (``difflib.unified_diff``), empty when the contents are equal.
    unified: str
    added_lines: int
    removed_lines: int

    @property
    def identical(self) -> bool:
        return not self.unified
