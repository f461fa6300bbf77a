"""Values on their way between engines in ``bastion db copy``, and the form both sides are
compared in. Pure: no database, no I/O.

The engines store the same app values differently. PostgreSQL has types SQLite has not:
``numeric`` (psycopg reads a ``Decimal``), ``json``/``jsonb`` (a parsed ``dict``/``list``),
``boolean`` (``bool``), ``timestamp``/``timestamptz``/``date`` (``datetime``/``date``),
``bytea`` (``bytes``). SQLite keeps what an app stores in such columns as its own storage
classes: text for JSON and times (``datetime('now')``'s ``YYYY-MM-DD HH:MM:SS``, or ISO 8601),
0/1 for booleans, a number or text for decimals. Each column gets a :class:`Kind` from the
declared types on both ends, which decides

* :func:`to_destination`: what is bound on the other engine (a ``Decimal`` becomes exact
  text for SQLite, whose NUMERIC affinity stores it as a number when that is lossless; a
  ``dict`` becomes JSON text; a ``datetime`` ISO 8601 text in UTC; on PostgreSQL 0/1 becomes a
  ``bool``, a time's text a ``datetime`` -- a time without an offset is taken as UTC, as
  SQLite's own ``datetime()`` writes it); and
* :func:`canonical`: the form the row checksums hash on both sides, so a value that arrived
  as it should compares equal (``Decimal('12.50')`` and ``12.5``, ``{"a": 1}`` and the text
  ``{"a":1}``, a ``timestamptz`` and its UTC text) and one that did not, does not.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import math
import uuid
from typing import Any

__all__ = ["Kind", "UnsupportedValue", "canonical", "column_kind", "key_value", "to_destination"]

_UTC = dt.UTC


class Kind(enum.Enum):
    """What a column holds, as far as carrying it between engines goes."""

    PLAIN = "plain"  # integers, floats, text, blobs: the same on both
    NUMERIC = "numeric"
    JSON = "json"
    BOOL = "bool"
    TIMESTAMP = "timestamp"  # without a time zone (taken as UTC): compared in UTC
    TIMESTAMPTZ = "timestamptz"
    DATE = "date"


_TIMES = frozenset({Kind.TIMESTAMP, Kind.TIMESTAMPTZ})


def _kind_of(declared: str) -> Kind:
    t = declared.lower().strip()
    if "json" in t:
        return Kind.JSON
    if t.startswith("bool"):
        return Kind.BOOL
    if t.startswith(("numeric", "decimal")):
        return Kind.NUMERIC
    if ("with time zone" in t and "without" not in t) or t.startswith("timestamptz"):
        return Kind.TIMESTAMPTZ
    if "timestamp" in t or "datetime" in t:
        return Kind.TIMESTAMP
    if t == "date":
        return Kind.DATE
    return Kind.PLAIN


def column_kind(*declared: str) -> Kind:
    """The kind of a column declared with these types (one per end): the first that is not
    plain (PostgreSQL's type says more than SQLite's, which may be any word)."""
    for t in declared:
        kind = _kind_of(t)
        if kind is not Kind.PLAIN:
            return kind
    return Kind.PLAIN


def _parse_time(text: str) -> dt.datetime | dt.date | None:
    try:
        return dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None


def _utc(value: dt.datetime) -> dt.datetime:
    """Aware -> UTC; naive is taken as UTC already (SQLite's ``datetime()`` is)."""
    return value.astimezone(_UTC) if value.tzinfo is not None else value.replace(tzinfo=_UTC)


class UnsupportedValue(TypeError):
    """A value of a type neither engine's binding takes (the copy names the column)."""


def to_destination(value: Any, kind: Kind, engine: str) -> Any:
    """``value`` as read from one engine, in the form bound on ``engine`` (the other)."""
    if value is None:
        return None
    if engine == "sqlite":
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, decimal.Decimal):
            return _decimal_text(value)
        if isinstance(value, dict | list):
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        if isinstance(value, dt.datetime):
            moment = _utc(value) if value.tzinfo is not None else value
            return moment.replace(tzinfo=None).isoformat(sep=" ")
        if isinstance(value, dt.date | dt.time):
            return value.isoformat()
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, memoryview):
            return bytes(value)
        if isinstance(value, int | float | str | bytes):
            if kind is Kind.JSON and isinstance(value, int | float):
                return json.dumps(value)
            return value
        raise UnsupportedValue(type(value).__name__)
    # PostgreSQL from SQLite's storage classes.
    if kind is Kind.BOOL and isinstance(value, int):
        return bool(value)
    if kind in _TIMES:
        when: dt.datetime | None = None
        if isinstance(value, str):
            parsed = _parse_time(value)
            when = _utc(parsed) if isinstance(parsed, dt.datetime) else None
        elif isinstance(value, int | float) and not isinstance(value, bool):
            when = dt.datetime.fromtimestamp(value, _UTC)  # unix time
        if when is not None:
            # A column without a time zone gets the UTC wall time (never the session's).
            return when if kind is Kind.TIMESTAMPTZ else when.replace(tzinfo=None)
    if kind is Kind.DATE and isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            return value
    if kind is Kind.NUMERIC and isinstance(value, float):
        return decimal.Decimal(repr(value))  # the float's shortest text, not its binary expansion
    if kind is Kind.JSON and not isinstance(value, str):
        return json.dumps(value)
    return value


def _decimal_text(value: decimal.Decimal) -> str:
    if value == value.to_integral_value():
        return str(int(value))
    # Not normalize(): it rounds to the context's 28 digits; trailing zeros are cut by hand.
    return format(value, "f").rstrip("0").rstrip(".")


def _number(value: int | float | decimal.Decimal) -> str:
    """One text per number, whatever type it arrived as: 2, 2.0 and Decimal('2.00') agree,
    12.5 and Decimal('12.50') agree; a decimal a float cannot hold exactly keeps its digits
    (and agrees with the same digits stored as text by SQLite)."""
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return f"n:{value}"
        if value == value.to_integral_value():
            return f"n:{int(value)}"
        as_float = float(value)
        if decimal.Decimal(repr(as_float)) == value:
            return f"n:{as_float!r}"
        return "s:" + _decimal_text(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return f"n:{value!r}"
        # The float's shortest text, as PostgreSQL's float8 -> numeric cast reads it: a
        # 1.2345678901234567e+19 that SQLite's NUMERIC affinity made of a long decimal text
        # agrees with the numeric 12345678901234567000 it became on PostgreSQL.
        return _number(decimal.Decimal(repr(value)))
    return f"n:{value!r}"


def canonical(value: Any, kind: Kind) -> str:
    """The text a row checksum hashes for ``value`` in a column of ``kind``."""
    if value is None:
        return "null"
    if isinstance(value, memoryview):
        value = bytes(value)
    if isinstance(value, bytes):
        return "b:" + value.hex()
    if kind is Kind.JSON:
        if isinstance(value, str):
            text: str = value
            try:
                value = json.loads(text)
            except ValueError:
                return "s:" + text
        return "j:" + json.dumps(value, sort_keys=True, separators=(",", ":"))
    if isinstance(value, bool):
        return f"n:{int(value)}"
    if kind in _TIMES:
        moment: Any = value
        if isinstance(value, str):
            moment = _parse_time(value) or value
        elif isinstance(value, int | float):
            moment = dt.datetime.fromtimestamp(value, _UTC)
        if isinstance(moment, dt.datetime):
            return "t:" + _utc(moment).replace(tzinfo=None).isoformat()
    if isinstance(value, dt.datetime):
        return "t:" + _utc(value).replace(tzinfo=None).isoformat()
    if isinstance(value, dt.date):
        return "s:" + value.isoformat()
    if isinstance(value, int | float | decimal.Decimal):
        return _number(value)
    if kind is Kind.NUMERIC and isinstance(value, str):
        try:
            return _number(decimal.Decimal(value))
        except decimal.InvalidOperation:
            return "s:" + value
    if isinstance(value, dict | list):
        return "j:" + json.dumps(value, sort_keys=True, separators=(",", ":"))
    return "s:" + str(value)


def key_value(value: Any) -> Any:
    """A primary-key value as kept in the copy's progress row (JSON) and bound again on the
    source when a copy resumes."""
    if isinstance(value, bytes | memoryview):
        raise UnsupportedValue("bytes")
    if isinstance(value, decimal.Decimal):
        return _decimal_text(value)
    if isinstance(value, dt.date | dt.time | uuid.UUID):
        return str(value)
    return value
