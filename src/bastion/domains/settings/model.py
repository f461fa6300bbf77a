"""The ``Setting`` value, the key rule and the value limits, shared by the repository, the
one-shot read, the CLI and the API.

Kept apart from :mod:`.repo` so that :func:`read_setting` (``bastion settings get`` in a
fresh interpreter) imports neither the store engine nor the repository toolkit.

Values: any JSON value but null, nested at most :data:`MAX_DEPTH` levels and at most
:data:`MAX_VALUE_BYTES` as stored (compact UTF-8 JSON). :func:`encode_value` checks both
*before* anything is written, so the library, the CLI and the API refuse the same values;
a deeper value would be stored by SQLite happily and then break every reader whose JSON
parser or serializer recurses (``GET /v1/settings`` and ``bastion settings list`` did).
:func:`decode_value` applies the same rule on the way back: a row written by an older
version or by another tool that breaks it is reported (:class:`SettingUnreadable`, or an
error row in a listing), never a crash.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from bastion.config import StoreConfig
from bastion.domains.settings import queries as q
from bastion.errors import InvalidName, InvalidValue, NotFound, SettingUnreadable

__all__ = [
    "MAX_DEPTH",
    "MAX_VALUE_BYTES",
    "Setting",
    "check_key",
    "decode_value",
    "encode_value",
    "not_set",
    "parse_value_text",
    "read_setting",
    "setting_from_row",
]

#: The deepest nesting a value may have: ``1`` is 0 levels, ``[1]`` 1, ``{"a": [1]}`` 2.
MAX_DEPTH = 64
#: The largest value, as stored: compact JSON, UTF-8 (the API's body limit is the same).
MAX_VALUE_BYTES = 1024 * 1024
#: A JSON text of n characters nests at most n // 2 levels: shorter ones need no depth walk.
_SHORT_TEXT = 2 * MAX_DEPTH + 1


@dataclasses.dataclass(frozen=True, slots=True)
class Setting:
    """One setting: its key, JSON value and when it was last set."""

    key: str
    value: Any
    updated_at: float
    #: Set (and ``value`` None) on a listing's row whose stored value cannot be read back.
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The setting as JSON-ready data (``error`` only on an unreadable row)."""
        data: dict[str, Any] = {"key": self.key, "value": self.value, "updated_at": self.updated_at}
        if self.error is not None:
            data["error"] = self.error
        return data


def _too_deep(value: Any) -> bool:
    """Whether ``value`` nests deeper than :data:`MAX_DEPTH`. Iterative: a value deep
    enough to matter is exactly one that would exhaust the interpreter's stack, and a
    container that contains itself is reported as too deep rather than walked forever."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > MAX_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def encode_value(key: str, value: Any) -> str:
    """``value`` as the JSON text to store under ``key``, after every check; nothing is
    written by a caller before this returns. ``InvalidValue`` names what is wrong."""
    if value is None:
        raise InvalidValue(
            f"setting {key!r}: null is not a value; delete the key instead",
            hint=f"Delete the key instead (`bastion settings delete {key}`).",
        )
    if _too_deep(value):
        raise InvalidValue(
            f"setting {key!r}: the value is nested deeper than {MAX_DEPTH} levels "
            "(or contains itself)",
            hint=f"Store a flatter value: at most {MAX_DEPTH} levels of arrays and objects.",
        )
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise InvalidValue(
            f"setting {key!r}: the value is not JSON-serializable ({err})",
            hint="Use strings, finite numbers, true/false, arrays and objects with string keys.",
        ) from None
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidValue(
            f"setting {key!r}: the value holds text that is not UTF-8 (a lone surrogate)",
            hint="Store text that encodes as UTF-8.",
        ) from None
    if size > MAX_VALUE_BYTES:
        raise InvalidValue(
            f"setting {key!r}: the value takes {size} bytes as JSON; the limit is "
            f"{MAX_VALUE_BYTES}",
            hint="Store large data in a table or a file of your own, and its path here.",
        )
    return text


def parse_value_text(key: str, text: str) -> Any:
    """``text`` parsed as JSON for ``key`` (the CLI's ``settings set``): ``ValueError`` if it
    is not JSON at all; ``InvalidValue`` if it is JSON nested past the limit (a parser that
    recurses would fail on it before any check could run)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise InvalidValue(
            f"setting {key!r}: the value is nested deeper than {MAX_DEPTH} levels",
            hint=f"Store a flatter value: at most {MAX_DEPTH} levels of arrays and objects.",
        ) from None


def decode_value(key: str, text: str | bytes) -> Any:
    """The stored JSON ``text`` of ``key`` as a value, or ``SettingUnreadable`` when it breaks
    the rules :func:`encode_value` writes by (a row from an older version or another tool)."""
    try:
        value = json.loads(text)
    except RecursionError:
        problem = f"it is nested far deeper than {MAX_DEPTH} levels"
    except ValueError:
        problem = "it is not valid JSON"
    else:
        if len(text) <= _SHORT_TEXT or not _too_deep(value):
            return value
        problem = f"it is nested deeper than {MAX_DEPTH} levels"
    raise SettingUnreadable(
        f"setting {key!r} holds a value that cannot be read: {problem}",
        hint=f"Delete it (`bastion settings delete {key}`) or set it again.",
        key=key,
    )


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


def read_setting(
    db_path: Path, key: str, *, config: StoreConfig | None = None, db_key: Any = None
) -> Setting:
    """``key``'s setting read straight from the file, without opening a ``Database``:
    header checked, nothing written (see :mod:`bastion.store.oneshot`). ``NotFound`` if
    unset. ``db_key`` (a ``DatabaseKey``) reads an encrypted database."""
    from bastion.store.oneshot import query_one

    check_key(key)
    return setting_from_row(key, query_one(db_path, q.GET, (key,), config=config, key=db_key))


def setting_from_row(key: str, row: tuple[Any, ...] | None) -> Setting:
    """``key``'s setting from its ``q.GET`` row; ``NotFound`` when there is none."""
    if row is None:
        raise not_set(key)
    return Setting(key, decode_value(key, row[0]), row[1])
