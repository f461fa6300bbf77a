"""Pydantic models of the API: what ``/openapi.json`` documents and responses are checked by.

Names in paths (secrets, settings, services) are constrained here, once: printable ASCII
without ``/``, ``\\`` or a leading dot, so a path-traversal attempt is refused by validation
before any route runs.
"""

# No `from __future__ import annotations` here: FastAPI and pydantic would turn every string
# annotation of the routes and models back into an object at start-up (a ForwardRef compiled
# and evaluated each, ~5 ms of the daemon's start; issue 22 §7). tests/api/test_fastapi_v1.py

from typing import Annotated, Any, Generic, TypeVar

from fastapi import Path
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

from bastion._time import from_rfc3339, rfc3339
from bastion.api.ints import shown_if_plain

__all__ = [
    "MAX_OFFSET",
    "NAME_PATTERN",
    "CheckResult",
    "DbStatus",
    "ErrorBody",
    "Health",
    "JobInfo",
    "MigrationRow",
    "Name",
    "Page",
    "Posture",
    "RequestCounters",
    "ShutdownAccepted",
    "Status",
    "TimeParam",
    "UtcTime",
]

T = TypeVar("T")

#: Largest accepted ``offset``: SQLite binds 64-bit integers, and no list here is that long.
MAX_OFFSET = 1_000_000_000

#: Letters, digits and ``_ . : @ -``; not starting with a dot (no ``.``/``..``), 1-200 chars.
NAME_PATTERN = r"^[A-Za-z0-9_@:-][A-Za-z0-9_.@:-]{0,199}$"
Name = Annotated[
    str, Path(pattern=NAME_PATTERN, description="A name: letters, digits, `_ . : @ -`.")
]


#: A point in time in a response: epoch seconds inside, RFC 3339 UTC on the wire
#: (``2026-11-23T13:12:13.106101Z``), as every JSON bastion writes (the CLI's ``--json`` too).
UtcTime = Annotated[
    float,
    PlainSerializer(rfc3339, return_type=str, when_used="json"),
    WithJsonSchema(
        {"type": "string", "format": "date-time", "description": "RFC 3339, UTC."},
        mode="serialization",
    ),
]


#: The characters of an RFC 3339 time or of epoch seconds: such a value is quoted in a refusal.
_TIME_CHARS = "0123456789-+:.TtZz eE"


def _time_param(value: object) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, str | int | float):
        try:
            return from_rfc3339(value)
        except ValueError:
            # from_rfc3339's text quotes the value whatever it is: here it is quoted only
            # when it is made of a time's characters (a client may have pasted a token).
            shown = shown_if_plain(str(value), _TIME_CHARS)
            raise PydanticCustomError("time", f"{shown} is not a time: {_TIME_FORMS}") from None
    raise PydanticCustomError("time", f"not a time: {_TIME_FORMS}")


_TIME_FORMS = "use RFC 3339 (2026-01-31T12:00:00Z) or epoch seconds"


#: A time in a query (``since``/``until``): RFC 3339 (what responses carry) or epoch seconds.
TimeParam = Annotated[
    float | None,
    BeforeValidator(_time_param),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}],
            "description": "RFC 3339 (as responses carry it) or Unix time in seconds.",
        },
        mode="validation",
    ),
]


#: What every response model of the API is configured with: unknown fields refused, frozen,
#: and its pydantic schema built on first use (``defer_build``) instead of at import. FastAPI
#: builds a ``TypeAdapter`` over each route's response model as the route is declared; over
#: a deferred model that adapter defers too, so the start (issue 22 §7) no longer builds the
#: schema of every response the API can send (~13 ms of CPU), and a route's first answer
#: builds the one it needs. The OpenAPI document is unchanged (built from the same models
#: when first asked for). Two first requests at once are safe: pydantic serialises a
#: deferred model's build under one lock since 2.14 (hence the floor in pyproject.toml),
#: which ``tests/api/test_deferred_build.py`` exercises from many threads at once.
RESPONSE_CONFIG = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class _Model(BaseModel):
    model_config = RESPONSE_CONFIG


class _Request(_Model):
    """Base of every request body: unknown fields refused, and no type coercion.

    Strict: a boolean is JSON ``true``/``false`` only (lax pydantic takes ``0``, ``"no"``,
    ``"off"`` for a destructive flag such as ``fix``), an integer is a JSON integer, a
    string a JSON string, exactly what the OpenAPI document's types say.
    """

    # Built at once, not deferred: FastAPI builds a body's TypeAdapter with the body's alias
    # in its ``Field`` and silences pydantic's warning that the alias is unused there; a
    # build deferred to the first request would raise that warning outside its silence.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=False)


class ErrorBody(_Model):
    code: str = Field(description="Stable error code (see docs/errors.md).")
    message: str
    hint: str


class Page(_Model, Generic[T]):
    """One page of a list.

    Offset pages carry ``offset``, ``total`` and ``next_offset`` (null on the last page);
    keyset pages (logs, events: lists that grow while you read them) carry ``next_cursor``
    (null on the last page), to be passed back unchanged as ``cursor``.
    """

    items: list[T]
    limit: int
    total: int | None = None
    offset: int | None = None
    next_offset: int | None = None
    next_cursor: str | None = None


class Health(_Model):
    status: str = "ok"
    version: str
    #: The HTTP API's semver: a client checks the major before anything else.
    api_version: str
    #: The daemon's process id (API 1.1): a client that found the port in ``run/daemon.json``
    #: asks, before it sends the token, that the daemon the file names is what answers there
    #: (a daemon killed with SIGKILL leaves the file; another program may have the port now).
    pid: int


class Posture(_Model):
    journal_mode: str
    synchronous: str
    foreign_keys: bool
    busy_timeout_ms: int
    sqlite_version: str


class RequestCounters(_Model):
    handled: int
    rejected: dict[str, int]


class JobInfo(_Model):
    name: str
    interval_s: float
    runs: int
    failures: int
    next_in_s: float
    last_duration_s: float | None
    last_error: str | None


class Status(_Model):
    version: str
    api_version: str
    python: str
    sqlite_version: str
    pid: int
    port: int
    started_at: str
    uptime_s: float
    home: str
    store: dict[str, Any]
    vault: dict[str, Any]
    services: dict[str, Any]
    jobs: list[JobInfo]
    requests: RequestCounters


class DbStatus(_Model):
    # Home.status() grows with the store; unknown keys are dropped, not a 500.
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    home: str
    database: str
    posture: dict[str, Any]
    size_bytes: int
    wal_bytes: int
    page_count: int
    page_size: int
    freelist_count: int
    sqlite_version: str
    migrations: list[dict[str, Any]] = []


class CheckResult(_Model):
    kind: str
    ok: bool
    problems: list[str]


class MigrationRow(_Model):
    namespace: str
    id: str
    checksum: str
    applied_at: UtcTime | None


class ShutdownAccepted(_Model):
    stopping: bool = True
    pid: int
