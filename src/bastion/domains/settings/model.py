"""The ``Setting`` value and the key rule, shared by the repository and the one-shot read.

Kept apart from :mod:`.repo` so that :func:`read_setting` (``bastion settings get`` in a
fresh interpreter) imports neither the store engine nor the repository toolkit.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from bastion.config import StoreConfig
from bastion.domains.settings import queries as q
from bastion.errors import InvalidName, NotFound

__all__ = ["Setting", "check_key", "not_set", "read_setting", "setting_from_row"]


@dataclasses.dataclass(frozen=True, slots=True)
class Setting:
    """One setting: its key, JSON value and when it was last set."""

    key: str
    value: Any
    updated_at: float

    def to_dict(self) -> dict[str, Any]:
        """The setting as JSON-ready data."""
        return dataclasses.asdict(self)


def check_key(key: str) -> None:
    """Raise ``InvalidName`` unless ``key`` is a setting key: 1-256 characters of text that
    encodes as UTF-8 (SQLite stores nothing else)."""
    if not isinstance(key, str) or not 1 <= len(key) <= 256:
        raise InvalidName(
            f"setting key must be a string of 1-256 characters, got {key!r}",
            hint="Use a dotted key such as ui.theme.",
            kind="setting key",
        )
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidName(
            f"setting key {key!r} is not UTF-8 text (it holds undecodable bytes)",
            hint="Use a dotted key such as ui.theme.",
            kind="setting key",
        ) from None


def not_set(key: str) -> NotFound:
    """The ``NotFound`` for an unset ``key`` (exit 66, 404)."""
    return NotFound(f"setting {key!r} is not set", hint="List them with `bastion settings list`.")


def read_setting(db_path: Path, key: str, *, config: StoreConfig | None = None) -> Setting:
    """``key``'s setting read straight from the file, without opening a ``Database``:
    header checked, nothing written (see :mod:`bastion.store.oneshot`). ``NotFound`` if
    unset."""
    from bastion.store.oneshot import query_one

    check_key(key)
    return setting_from_row(key, query_one(db_path, q.GET, (key,), config=config))


def setting_from_row(key: str, row: tuple[Any, ...] | None) -> Setting:
    """``key``'s setting from its ``q.GET`` row; ``NotFound`` when there is none."""
    if row is None:
        raise not_set(key)
    return Setting(key, json.loads(row[0]), row[1])
