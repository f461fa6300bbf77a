"""The ``Secret`` value type: a secret string that does not print itself.

A ``Secret`` masks itself in ``repr``, ``str``, f-strings, ``%`` formatting and logging, and
refuses pickling and JSON encoding by accident; :meth:`Secret.reveal` is the only way to the
value. Code that holds a ``Secret`` can pass it around, log it, put it in an exception message
and store it in a dataclass without leaking it.
"""

from __future__ import annotations

import hmac
from typing import Any, NoReturn

__all__ = ["MASK", "REFERENCE_PREFIX", "Secret", "format_reference", "parse_reference"]

MASK = "********"


class Secret:
    """A secret string. ``str(s)`` is ``********``; ``s.reveal()`` is the value."""

    __slots__ = ("__value", "name")

    def __init__(self, value: str, *, name: str | None = None) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret wraps a str, not {type(value).__name__}")
        self.__value = value
        #: Which secret this is (``scope/name``), safe to show.
        self.name = name

    def reveal(self) -> str:
        """The value. The one way to it: grep for ``.reveal()`` to audit where values go."""
        return self.__value

    def __len__(self) -> int:
        return len(self.__value)

    def __bool__(self) -> bool:
        return bool(self.__value)

    def __repr__(self) -> str:
        return f"Secret({self.name!r}, {MASK})" if self.name else f"Secret({MASK})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return format(MASK, spec)

    def __eq__(self, other: object) -> bool:
        # Constant-time, so comparing a guess against a Secret tells nothing by its timing.
        if isinstance(other, Secret):
            return hmac.compare_digest(self.__value.encode(), other.reveal().encode())
        return NotImplemented

    # Equal by value, so unhashable: a hash of the value would be an oracle for it.
    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled; pass .reveal() explicitly if you must")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self


REFERENCE_PREFIX = "secret:"


def format_reference(scope: str, name: str) -> str:
    """The text a scrubbed config holds instead of a value: ``secret:scope/name``."""
    return f"{REFERENCE_PREFIX}{scope}/{name}"


def parse_reference(text: str, *, default_scope: str = "global") -> tuple[str, str] | None:
    """``(scope, name)`` for ``secret:scope/name`` (or ``secret:name``), else ``None``."""
    if not isinstance(text, str) or not text.startswith(REFERENCE_PREFIX):
        return None
    body = text[len(REFERENCE_PREFIX) :]
    scope, sep, name = body.rpartition("/")
    if not sep:
        return (default_scope, body) if body else None
    return (scope, name) if scope and name else None
