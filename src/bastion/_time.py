"""Times on the wire: RFC 3339 in UTC, one format for every JSON bastion writes.

Inside bastion a point in time is epoch seconds (a float, as stored); the HTTP API, SSE
payloads and the CLI's ``--json`` write it as ``2026-11-23T13:12:13.106101Z`` (microseconds,
``Z``), and accept that or epoch seconds back.
"""

from __future__ import annotations

import datetime as dt
import math
import time

__all__ = ["as_local", "from_local", "from_rfc3339", "rfc3339"]


def rfc3339(ts: float) -> str:
    """``ts`` (epoch seconds) as RFC 3339 UTC with microseconds: ``2026-11-23T13:12:13.106101Z``.

    Truncated to the microsecond, never rounded up: a time a client reads and sends back as
    ``since`` (inclusive) must not land after the row it came from, or that row is skipped.
    (``fromtimestamp`` rounds to the nearest microsecond: a stored ``...40.9999998`` came back
    as ``...41.000000``.)
    """
    seconds = math.floor(ts)
    micros = min(999_999, math.floor((ts - seconds) * 1_000_000))
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC) + dt.timedelta(microseconds=micros)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def from_rfc3339(value: str | float) -> float:
    """Epoch seconds from an RFC 3339 / ISO-8601 time (UTC when it names no offset) or from a
    number; ``ValueError`` naming the accepted forms otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _finite(float(value), str(value))
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return _finite(number, text)
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text[:40]!r} is not a time: use RFC 3339 (2026-01-31T12:00:00Z) or epoch seconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _finite(number: float, text: str) -> float:
    # float() reads "nan" and "inf": a bound that matches nothing (or everything), silently.
    if not math.isfinite(number):
        raise ValueError(
            f"{text[:40]!r} is not a time: use RFC 3339 (2026-01-31T12:00:00Z) or epoch seconds"
        )
    return number


# --- local time ---------------------------------------------------------------------------
# The C library takes TZ offsets Python's tzinfo cannot hold: glibc reads TZ=UTC+25 (and
# TZ=XYZ-30) as 25 (30) hours from UTC, POSIX allows 24, and ``astimezone()`` raises
# ValueError for any offset of a day or more ("offset must be a timedelta strictly
# between..."): every time a command printed was a traceback.


def as_local(moment: dt.datetime) -> dt.datetime:
    """``moment`` (aware) in the local time zone; in UTC, offset shown, when the local zone is
    a day or more from UTC (no tzinfo holds that offset: the instant stays exact)."""
    try:
        return moment.astimezone()
    except ValueError:
        return moment.astimezone(dt.UTC)


def from_local(naive: dt.datetime) -> dt.datetime:
    """A naive wall-clock time, as a person typing it means it (local time), as an aware UTC
    datetime. The C library's ``mktime`` reads it when the local zone is a day or more from
    UTC (``astimezone()`` cannot); ``OverflowError`` past the range of dates either way."""
    try:
        return naive.astimezone().astimezone(dt.UTC)
    except ValueError:
        seconds = time.mktime(naive.replace(microsecond=0).timetuple())
        moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
        return moment + dt.timedelta(microseconds=naive.microsecond)
