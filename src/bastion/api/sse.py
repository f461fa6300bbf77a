"""Server-sent events: tail a growing table (logs, events, activity) as ``text/event-stream``.

Each row goes out as ``id: <rowid>`` + ``event: <name>`` + ``data: <json>``. A client that
reconnects sends the last id it saw as ``Last-Event-ID`` and resumes right after it, with
nothing lost and nothing repeated (ids are the table's increasing rowids). Without it, the
stream starts at the current end, after an optional ``backlog`` of the newest rows.

The table is polled (a cheap indexed ``id > ?`` query) rather than fed by in-process
callbacks, so rows written by *other* processes on the same database (a Python app using the
library next to the daemon) reach the stream too. A comment line every few seconds keeps
proxies and clients from timing the stream out; the stream ends when the daemon shuts down.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from bastion.api.ints import read_int
from bastion.api.state import DaemonState
from bastion.errors import InvalidRequest

__all__ = ["POLL_S", "event_stream", "format_event", "resume_id", "sse_response"]

#: How often an idle stream looks for new rows.
POLL_S = 0.2
#: Seconds between keep-alive comments on an idle stream.
HEARTBEAT_S = 10.0

#: fetch(after_id, limit) -> rows as (id, payload), ascending by id.
Fetch = Callable[[int, int], Awaitable[Sequence[tuple[int, dict[str, Any]]]]]


def format_event(event_id: int, name: str, payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload, separators=(",", ":"), default=str)
    # json.dumps never emits a raw newline, so one data: line carries the whole payload.
    return f"id: {event_id}\nevent: {name}\ndata: {data}\n\n".encode()


def resume_id(request: Request) -> int | None:
    """The ``Last-Event-ID`` a reconnecting client sent, or None."""
    raw = request.headers.get("last-event-id")
    if raw is None or raw.strip() == "":
        return None
    try:
        # Strictly (bastion.api.ints): int() read " 5", "+5", "1_0" and other scripts' digits.
        return read_int(raw, ge=0, le=2**63 - 1)  # SQLite's rowid range
    except ValueError as err:
        raise InvalidRequest(
            f"Last-Event-ID: {err}",
            hint="Send back the `id:` of the last event received, or omit the header.",
        ) from None


async def event_stream(
    fetch: Fetch,
    *,
    name: str,
    after: int,
    state: DaemonState,
    request: Request,
    first: Sequence[tuple[int, dict[str, Any]]] = (),
    batch: int = 500,
) -> AsyncIterator[bytes]:
    """Yield ``first`` then every new row after ``after``, until shutdown or disconnect."""
    yield b": stream open\n\n"
    for event_id, payload in first:
        yield format_event(event_id, name, payload)
        after = max(after, event_id)
    idle = 0.0
    while not state.stopping:
        rows = await fetch(after, batch)
        for event_id, payload in rows:
            yield format_event(event_id, name, payload)
            after = event_id
        if len(rows) >= batch:
            continue  # more are waiting: no pause
        if await request.is_disconnected():
            return
        await asyncio.sleep(POLL_S)
        idle = 0.0 if rows else idle + POLL_S
        if idle >= HEARTBEAT_S:
            idle = 0.0
            yield b": keep-alive\n\n"


def sse_response(stream: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
