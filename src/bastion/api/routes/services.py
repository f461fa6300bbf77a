"""Services: list, status, start, stop, restart, declare, reload, and each service's logs
and events.

Control goes to the daemon's running supervisor (``state.supervisor``); a stop waits for the
child to be gone (its stop signal, grace period, then SIGKILL to its group). Logs and events
of a service are the ``logs``/``events`` rows whose source/subject is its name.

``services/*.toml`` stays the one source of truth: ``PUT`` writes a validated spec there and
reloads; every answer that names services first picks up edits not yet applied
(``DaemonState.synced_supervisor``), so the API and the CLI (which reads the files) agree.
"""

# No `from __future__ import annotations` here: FastAPI and pydantic would turn every string
# annotation of the routes and models back into an object at start-up (a ForwardRef compiled
# and evaluated each, ~5 ms of the daemon's start; issue 22 §7). tests/api/test_fastapi_v1.py

import dataclasses
import functools
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from bastion._credentials import find_credential
from bastion.api.deferred_route import DeferredAPIRoute
from bastion.api.ints import IntQuery
from bastion.api.models import MAX_OFFSET, Page, UtcTime, _Model
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
from bastion.api.state import DaemonState, get_state, request_actor
from bastion.domains.activity import ActivityRepo
from bastion.errors import ServiceSpecError

if TYPE_CHECKING:
    # Only annotations here (quoted): the supervisor is loaded by its start, after the
    # daemon's handshake (bastion.api.supervision; issue 22 §7).
    from bastion.supervisor import ServiceStatus
    from bastion.supervisor.catalog import ReloadReport

__all__ = ["router"]

router = APIRouter(prefix="/v1/services", tags=["services"], route_class=DeferredAPIRoute)
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
    at: UtcTime
    consecutive_failures: int


class ServiceOut(_Model):
    name: str
    state: str
    reason: str
    since: UtcTime
    pid: int | None
    ready: bool | None
    breaker: str
    attempt: int
    restarts_in_window: int
    trips: int
    next_start_at: UtcTime | None
    last_exit_code: int | None
    #: Names of the secrets injected at the last start (never values).
    secret_names: list[str]
    autostart: bool
    #: Each health probe's latest result while the service runs (startup, liveness, readiness).
    probes: list[ProbeOut]

    @classmethod
    def of(cls, s: "ServiceStatus") -> "ServiceOut":
        return cls(**s.to_dict())


@router.get("", response_model=Page[ServiceOut])
async def list_services(
    state: State,
    limit: Annotated[int, IntQuery(ge=1, le=500)] = 100,
    offset: Annotated[int, IntQuery(ge=0, le=MAX_OFFSET)] = 0,
) -> Page[ServiceOut]:
    """Every configured service with its state, breaker and restart counts."""
    statuses = (await state.synced_supervisor()).list()
    window = statuses[offset : offset + limit]
    return Page[ServiceOut](
        items=[ServiceOut.of(s) for s in window],
        limit=limit,
        total=len(statuses),
        offset=offset,
        next_offset=offset + limit if offset + limit < len(statuses) else None,
    )


class ProblemOut(_Model):
    """An invalid file in services/ (the version already running, if any, keeps running)."""

    name: str
    file: str
    code: str
    message: str
    hint: str
    key: str | None
    since: UtcTime
    running_previous: bool


class ReloadOut(_Model):
    """What a reload did, by service name."""

    added: list[str]
    started: list[str]
    restarted: list[str]
    updated: list[str]
    removed: list[str]
    unchanged: list[str]
    problems: list[ProblemOut]

    @classmethod
    def of(cls, report: "ReloadReport") -> "ReloadOut":
        return cls(**report.to_dict())


@router.get("/problems", response_model=Page[ProblemOut])
async def service_problems(state: State) -> Page[ProblemOut]:
    """Invalid files in services/: each names the file, the key and the fix."""
    await state.synced_supervisor()
    problems = [ProblemOut(**p.to_dict()) for p in state.require_catalog().problems]
    return Page[ProblemOut](items=problems, limit=len(problems), total=len(problems), offset=0)


@router.post("/reload", response_model=ReloadOut)
async def reload_services(state: State) -> ReloadOut:
    """Read services/ again now: add, restart (process fields changed), update in place,
    remove; invalid files are reported and their running versions keep running."""
    report = await (await state.started_catalog()).reload()
    await _record(state, "service.reload", "services", {"problems": len(report.problems)})
    return ReloadOut.of(report)


@router.get("/{name}", response_model=ServiceOut)
async def service_status(state: State, name: ServiceName) -> ServiceOut:
    return ServiceOut.of((await state.synced_supervisor()).status(name))


#: A spec as JSON: the keys of a services/<name>.toml file (see docs/services.md).
SpecBody = Annotated[
    dict[str, Any],
    Body(
        description="The service spec: the same keys as a services/<name>.toml file.",
        examples=[
            {
                "argv": ["/usr/local/bin/mcp-server", "--stdio"],
                "secrets": {"API_KEY": "secret:global/api-key"},
                "autostart": True,
                "health": {"liveness": {"kind": "mcp", "interval_s": 10}},
            }
        ],
    ),
]


@router.put(
    "/{name}",
    response_model=ServiceOut,
    status_code=200,
    responses={201: {"model": ServiceOut, "description": "Created"}},
)
async def put_service(
    state: State, name: ServiceName, spec: SpecBody, response: Response
) -> ServiceOut:
    """Declare or replace a service: the spec is checked by the same code as a TOML file,
    written to services/<name>.toml atomically, and applied (a new service starts if its
    spec says autostart; a changed one restarts only if its process fields changed)."""
    catalog = await state.started_catalog()
    try:
        created, report = await catalog.put(name, spec)
    except ServiceSpecError as err:
        raise _without_foreign_keys(err) from None
    response.status_code = 201 if created else 200
    await _record(
        state,
        "service.put",
        name,
        {"created": created, "restarted": name in report.restarted},
    )
    return ServiceOut.of(state.require_supervisor().status(name))


@functools.cache
def _spec_keys() -> frozenset[str]:
    """Every key a service spec declares, at any depth (the fields of its dataclasses)."""
    from bastion.supervisor import spec as spec_module

    keys: set[str] = set()
    for exported in spec_module.__all__:
        cls = getattr(spec_module, exported)
        if isinstance(cls, type) and dataclasses.is_dataclass(cls):
            keys.update(field.name for field in dataclasses.fields(cls))
    return frozenset(keys)


#: An environment variable's name as POSIX writes it (``env``, ``secrets``, ``env_allow``
#: keys): a name the client declares, shown unless it looks like a credential.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _shown_key(part: str, known: frozenset[str]) -> bool:
    if part in known:
        return True
    return _ENV_NAME.fullmatch(part) is not None and find_credential("name", part) is None


def _without_foreign_keys(err: ServiceSpecError) -> ServiceSpecError:
    """``err`` with each part of its key path that no spec declares replaced by ``<a key>``
    (an environment variable's plain name is shown unless it looks like a credential).

    The spec's checks name the key they refuse (``x.toml: sk-live-...: unknown key``), right
    for a file its author reads; a spec sent to the API is the client's JSON, and a key in it
    that the spec does not declare may be a secret pasted in the wrong place."""
    key = str(err.details.get("key", ""))
    source = str(err.details.get("file", ""))
    head = f"{source}: {key}: "
    if not key or not err.message.startswith(head):
        return err
    known = _spec_keys()
    shown = ".".join(part if _shown_key(part, known) else "<a key>" for part in key.split("."))
    if shown == key:
        return err
    return ServiceSpecError(
        f"{source}: {shown}: {err.message[len(head) :]}",
        hint=f"{err.hint} (A key the spec does not declare is not repeated: it may hold a secret.)",
        file=source,
        key=shown,
    )


@router.delete("/{name}", response_model=ReloadOut)
async def delete_service(state: State, name: ServiceName) -> ReloadOut:
    """Remove services/<name>.toml: the service is stopped and forgotten."""
    report = await (await state.started_catalog()).delete(name)
    await _record(state, "service.delete", name, {})
    return ReloadOut.of(report)


async def _record(state: DaemonState, action: str, subject: str, data: dict[str, Any]) -> None:
    await state.home.db.awrite(lambda tx: ActivityRepo.record_tx(tx, "api", action, subject, data))


@router.post("/{name}/{action}", response_model=ServiceOut)
async def control_service(
    state: State,
    name: ServiceName,
    action: Literal["start", "stop", "restart"],
    actor: Annotated[str, Depends(request_actor)],
) -> ServiceOut:
    """Start (an OPEN breaker is reset), stop (waits until stopped), or restart."""
    supervisor = await state.synced_supervisor()
    if action == "start":
        status = await supervisor.start(name)
    elif action == "stop":
        status = await supervisor.stop(name)
    else:
        status = await supervisor.restart(name)
    await state.home.db.awrite(
        lambda tx: ActivityRepo.record_tx(
            tx, actor, f"service.{action}", name, {"state": str(status.state)}
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
    (await state.synced_supervisor()).status(name)  # 404 for an unknown service
    return await query_logs(
        state, source=name, level=level, text=text, order=order, limit=limit, cursor=cursor
    )


@router.get("/{name}/logs/stream", response_class=StreamingResponse, responses=_SSE)
async def tail_service_logs(
    request: Request,
    state: State,
    name: ServiceName,
    backlog: Annotated[int, IntQuery(ge=0, le=1000)] = 0,
) -> StreamingResponse:
    """Live tail of the service's output (SSE, event `log`); resumes after `Last-Event-ID`."""
    (await state.synced_supervisor()).status(name)  # 404 for an unknown service
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
    supervisor = await state.synced_supervisor()
    supervisor.status(name)
    await supervisor.flush()  # transitions queued for the journal are part of the answer
    return await query_events(state, subject=name, order=order, limit=limit, cursor=cursor)
