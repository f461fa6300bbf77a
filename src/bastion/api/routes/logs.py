"""Logs, events and activity: filtered, paginated queries and SSE tails.

Filters are declared query parameters (nothing else reaches SQL); sort keys are ``Literal``
whitelists. Logs and events page by keyset cursor (they grow while being read); activity
pages by cursor or by offset with a total. The ``/stream`` routes are server-sent events
with ``Last-Event-ID`` resume (see :mod:`bastion.api.sse`).
"""

# No `from __future__ import annotations` here: FastAPI and pydantic would turn every string
# annotation of the routes and models back into an object at start-up (a ForwardRef compiled
# and evaluated each, ~5 ms of the daemon's start; issue 22 §7). tests/api/test_fastapi_v1.py

import asyncio
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import Field

from bastion.api.deferred_route import DeferredAPIRoute
from bastion.api.ints import IntQuery
from bastion.api.models import MAX_OFFSET, Page, TimeParam, UtcTime, _Model
from bastion.api.sse import event_stream, resume_id, sse_response
from bastion.api.state import DaemonState, get_state
from bastion.domains.activity.repo import Activity
from bastion.domains.events.repo import Event
from bastion.domains.logs.repo import LogRecord
from bastion.errors import InvalidRequest
from bastion.store.repo import encode_cursor

__all__ = ["router"]

router = APIRouter(route_class=DeferredAPIRoute)
State = Annotated[DaemonState, Depends(get_state)]

Level = Literal["debug", "info", "warning", "error", "critical"]
Source = Annotated[str | None, Query(max_length=200, description="Service name or `bastion`.")]
Text = Annotated[str | None, Query(max_length=500, description="Case-insensitive substring.")]
Since = Annotated[
    TimeParam, Query(description="From this time, inclusive: RFC 3339 or Unix seconds.")
]
Until = Annotated[
    TimeParam, Query(description="Before this time, exclusive: RFC 3339 or Unix seconds.")
]
Limit = Annotated[int, IntQuery(ge=1, le=1000)]
Cursor = Annotated[str | None, Query(max_length=500, description="`next_cursor` of a page.")]
Backlog = Annotated[
    int, IntQuery(ge=0, le=1000, description="Newest rows to send first (ignored on resume).")
]
_SSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "An event stream."}
}


class LogOut(_Model):
    id: int
    ts: UtcTime
    level: str
    source: str
    stream: str
    message: str
    fields: dict[str, Any] | None = None

    @classmethod
    def of(cls, r: LogRecord) -> "LogOut":
        return cls(
            id=r.id or 0,
            ts=r.ts,
            level=r.level,
            source=r.source,
            stream=r.stream,
            message=r.message,
            fields=r.fields,
        )


class EventOut(_Model):
    id: int
    ts: UtcTime
    kind: str
    subject: str
    data: dict[str, Any] | None = None

    @classmethod
    def of(cls, e: Event) -> "EventOut":
        return cls(id=e.id, ts=e.ts, kind=e.kind, subject=e.subject, data=e.data)


class ActivityOut(_Model):
    id: int
    ts: UtcTime
    actor: str
    action: str
    subject: str
    details: dict[str, Any] | None = Field(default=None)

    @classmethod
    def of(cls, a: Activity) -> "ActivityOut":
        return cls(
            id=a.id, ts=a.ts, actor=a.actor, action=a.action, subject=a.subject, details=a.details
        )


def _bad(err: ValueError) -> InvalidRequest:
    # Repository ValueErrors name the parameter (cursor, sort key); they carry no secrets.
    return InvalidRequest(str(err))


# --- logs ----------------------------------------------------------------------------------


@router.get("/v1/logs", tags=["logs"], response_model=Page[LogOut])
async def query_logs(
    state: State,
    *,
    source: Source = None,
    level: Annotated[Level | None, Query(description="Minimum level.")] = None,
    since: Since = None,
    until: Until = None,
    text: Text = None,
    order: Literal["asc", "desc"] = "desc",
    limit: Limit = 200,
    cursor: Cursor = None,
) -> Page[LogOut]:
    """Log lines (services' captured output, bastion's own), filtered, newest first."""
    try:
        page = await asyncio.to_thread(
            state.home.logs.query,
            source=source,
            level=level,
            since=since,
            until=until,
            text=text,
            limit=limit,
            cursor=cursor,
            newest_first=order == "desc",
        )
    except ValueError as err:
        raise _bad(err) from err
    return Page[LogOut](
        items=[LogOut.of(r) for r in page.items], limit=limit, next_cursor=page.next_cursor
    )


@router.get(
    "/v1/logs/stream",
    tags=["logs"],
    response_class=StreamingResponse,
    responses=_SSE,
)
async def tail_logs(
    request: Request,
    state: State,
    *,
    source: Source = None,
    level: Annotated[Level | None, Query(description="Minimum level.")] = None,
    text: Text = None,
    backlog: Backlog = 0,
) -> StreamingResponse:
    """Live tail (SSE, event `log`); resumes after `Last-Event-ID`."""
    logs = state.home.logs
    resume = resume_id(request)

    def fetch_sync(after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        page = logs.query(source=source, level=level, text=text, after_id=after, limit=limit)
        return [(r.id or 0, LogOut.of(r).model_dump(mode="json")) for r in page.items]

    async def fetch(after: int, limit: int) -> Sequence[tuple[int, dict[str, Any]]]:
        return await asyncio.to_thread(fetch_sync, after, limit)

    first: list[tuple[int, dict[str, Any]]] = []
    if resume is None:
        after = await asyncio.to_thread(logs.latest_id)
        if backlog:
            page = await asyncio.to_thread(
                lambda: logs.query(
                    source=source, level=level, text=text, limit=backlog, newest_first=True
                )
            )
            first = [
                (r.id or 0, LogOut.of(r).model_dump(mode="json")) for r in reversed(page.items)
            ]
    else:
        after = resume
    return sse_response(
        event_stream(fetch, name="log", after=after, state=state, request=request, first=first)
    )


# --- events --------------------------------------------------------------------------------

Kind = Annotated[str | None, Query(max_length=200, description="e.g. `service.transition`.")]
Subject = Annotated[str | None, Query(max_length=500)]


@router.get("/v1/events", tags=["events"], response_model=Page[EventOut])
async def query_events(
    state: State,
    *,
    kind: Kind = None,
    subject: Subject = None,
    since: Since = None,
    until: Until = None,
    order: Literal["asc", "desc"] = "desc",
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[EventOut]:
    """State-change events (service transitions, migrations, backups, settings changes)."""
    try:
        page = await asyncio.to_thread(
            state.home.events.query,
            kind=kind,
            subject=subject,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
            newest_first=order == "desc",
        )
    except ValueError as err:
        raise _bad(err) from err
    return Page[EventOut](
        items=[EventOut.of(e) for e in page.items], limit=limit, next_cursor=page.next_cursor
    )


@router.get("/v1/events/stream", tags=["events"], response_class=StreamingResponse, responses=_SSE)
async def tail_events(
    request: Request,
    state: State,
    *,
    kind: Kind = None,
    subject: Subject = None,
    backlog: Backlog = 0,
) -> StreamingResponse:
    """Live events (SSE, event `event`); resumes after `Last-Event-ID`."""
    events = state.home.events
    resume = resume_id(request)

    def fetch_sync(after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        page = events.query(kind=kind, subject=subject, after_id=after, limit=limit)
        return [(e.id, EventOut.of(e).model_dump(mode="json")) for e in page.items]

    async def fetch(after: int, limit: int) -> Sequence[tuple[int, dict[str, Any]]]:
        return await asyncio.to_thread(fetch_sync, after, limit)

    first: list[tuple[int, dict[str, Any]]] = []
    if resume is None:
        after = await asyncio.to_thread(events.latest_id)
        if backlog:
            page = await asyncio.to_thread(
                lambda: events.query(kind=kind, subject=subject, limit=backlog, newest_first=True)
            )
            first = [(e.id, EventOut.of(e).model_dump(mode="json")) for e in reversed(page.items)]
    else:
        after = resume
    return sse_response(
        event_stream(fetch, name="event", after=after, state=state, request=request, first=first)
    )


# --- activity ------------------------------------------------------------------------------


@router.get("/v1/activity", tags=["activity"], response_model=Page[ActivityOut])
async def query_activity(
    state: State,
    *,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=200)] = None,
    subject: Subject = None,
    since: Since = None,
    until: Until = None,
    sort: Literal["ts", "id", "actor", "action"] = "ts",
    order: Literal["asc", "desc"] = "desc",
    limit: Limit = 50,
    cursor: Cursor = None,
    offset: Annotated[
        int | None, IntQuery(ge=0, le=MAX_OFFSET, description="Offset paging (with a total).")
    ] = None,
) -> Page[ActivityOut]:
    """The activity / audit feed: who did what to what, when."""
    if cursor is not None and offset is not None:
        raise InvalidRequest("give either cursor or offset, not both")
    try:
        page = await asyncio.to_thread(
            state.home.activity.query,
            actor=actor,
            action=action,
            subject=subject,
            since=since,
            until=until,
            sort=sort,
            direction=order,
            limit=limit,
            cursor=cursor,
            offset=offset,
        )
    except ValueError as err:
        raise _bad(err) from err
    nxt = None
    if page.total is not None and offset is not None and offset + limit < page.total:
        nxt = offset + limit
    return Page[ActivityOut](
        items=[ActivityOut.of(a) for a in page.items],
        limit=limit,
        total=page.total,
        offset=page.offset,
        next_offset=nxt,
        next_cursor=page.next_cursor,
    )


@router.get(
    "/v1/activity/stream", tags=["activity"], response_class=StreamingResponse, responses=_SSE
)
async def tail_activity(
    request: Request,
    state: State,
    *,
    actor: Annotated[str | None, Query(max_length=200)] = None,
) -> StreamingResponse:
    """Live activity (SSE, event `activity`); resumes after `Last-Event-ID`."""
    activity = state.home.activity
    resume = resume_id(request)

    def fetch_sync(after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        # Keyset on id, ascending: the cursor of "the row with id = after".
        page = activity.query(
            actor=actor,
            sort="id",
            direction="asc",
            limit=limit,
            cursor=encode_cursor([after]) if after else None,
        )
        return [(a.id, ActivityOut.of(a).model_dump(mode="json")) for a in page.items]

    async def fetch(after: int, limit: int) -> Sequence[tuple[int, dict[str, Any]]]:
        return await asyncio.to_thread(fetch_sync, after, limit)

    if resume is None:
        newest = await asyncio.to_thread(
            lambda: activity.query(sort="id", direction="desc", limit=1)
        )
        after = newest.items[0].id if newest.items else 0
    else:
        after = resume
    return sse_response(
        event_stream(fetch, name="activity", after=after, state=state, request=request)
    )
