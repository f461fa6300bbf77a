"""Services: list, status, start, stop, restart, and each service's logs and events.

Control goes to the daemon's running supervisor (``state.supervisor``); a stop waits for the
child to be gone (its stop signal, grace period, then SIGKILL to its group). Logs and events
of a service are the ``logs``/``events`` rows whose source/subject is its name.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse

from bastion.api.models import MAX_OFFSET, Page, _Model
from bastion.api.routes.logs import (
    _SSE,
    Cursor,
    EventOut,
    Level,
    Limit,
    LogOut,
    Text,
    query_events,
    query_logs,
    tail_logs,
)
from bastion.api.state import DaemonState, get_state
from bastion.domains.activity import ActivityRepo
from bastion.supervisor import ServiceStatus

__all__ = ["router"]

router = APIRouter(prefix="/v1/services", tags=["services"])
State = Annotated[DaemonState, Depends(get_state)]
#: The supervisor's own service-name rule.
ServiceName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]


class ProbeOut(_Model):
    """The latest result of one health probe (its own detail, never the child's output)."""

    role: str
    kind: str
    ok: bool
    detail: str
    latency_ms: float
    at: float
    consecutive_failures: int


class ServiceOut(_Model):
    name: str
    state: str
    reason: str
    since: float
    pid: int | None
    ready: bool | None
    breaker: str
    attempt: int
    restarts_in_window: int
    trips: int
    next_start_at: float | None
    last_exit_code: int | None
    #: Names of the secrets injected at the last start (never values).
    secret_names: list[str]
    autostart: bool
    #: Each health probe's latest result while the service runs (startup, liveness, readiness).
    probes: list[ProbeOut]

    @classmethod
    def of(cls, s: ServiceStatus) -> ServiceOut:
        return cls(**s.to_dict())


@router.get("", response_model=Page[ServiceOut])
async def list_services(
    state: State,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Page[ServiceOut]:
    """Every configured service with its state, breaker and restart counts."""
    statuses = state.require_supervisor().list()
    window = statuses[offset : offset + limit]
    return Page[ServiceOut](
        items=[ServiceOut.of(s) for s in window],
        limit=limit,
        total=len(statuses),
        offset=offset,
        next_offset=offset + limit if offset + limit < len(statuses) else None,
    )


@router.get("/{name}", response_model=ServiceOut)
async def service_status(state: State, name: ServiceName) -> ServiceOut:
    return ServiceOut.of(state.require_supervisor().status(name))


@router.post("/{name}/{action}", response_model=ServiceOut)
async def control_service(
    state: State, name: ServiceName, action: Literal["start", "stop", "restart"]
) -> ServiceOut:
    """Start (an OPEN breaker is reset), stop (waits until stopped), or restart."""
    supervisor = state.require_supervisor()
    if action == "start":
        status = await supervisor.start(name)
    elif action == "stop":
        status = await supervisor.stop(name)
    else:
        status = await supervisor.restart(name)
    await state.home.db.awrite(
        lambda tx: ActivityRepo.record_tx(
            tx, "api", f"service.{action}", name, {"state": str(status.state)}
        )
    )
    return ServiceOut.of(status)


@router.get("/{name}/logs", response_model=Page[LogOut])
async def service_logs(
    state: State,
    name: ServiceName,
    *,
    level: Annotated[Level | None, Query()] = None,
    text: Text = None,
    order: Literal["asc", "desc"] = "desc",
    limit: Limit = 200,
    cursor: Cursor = None,
) -> Page[LogOut]:
    """The service's captured output (secrets already redacted at capture)."""
    state.require_supervisor().status(name)  # 404 for an unknown service
    return await query_logs(
        state, source=name, level=level, text=text, order=order, limit=limit, cursor=cursor
    )


@router.get("/{name}/logs/stream", response_class=StreamingResponse, responses=_SSE)
async def tail_service_logs(
    request: Request,
    state: State,
    name: ServiceName,
    backlog: Annotated[int, Query(ge=0, le=1000)] = 0,
) -> StreamingResponse:
    """Live tail of the service's output (SSE, event `log`); resumes after `Last-Event-ID`."""
    state.require_supervisor().status(name)  # 404 for an unknown service
    return await tail_logs(request, state, source=name, backlog=backlog)


@router.get("/{name}/events", response_model=Page[EventOut])
async def service_events(
    state: State,
    name: ServiceName,
    *,
    order: Literal["asc", "desc"] = "desc",
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[EventOut]:
    """The service's state transitions and other events, newest first."""
    supervisor = state.require_supervisor()
    supervisor.status(name)
    await supervisor.flush()  # transitions queued for the journal are part of the answer
    return await query_events(state, subject=name, order=order, limit=limit, cursor=cursor)
