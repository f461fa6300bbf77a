"""Routes the dashboard needs that the daemon's ``/v1`` API does not serve (yet).

Under ``/v1/dashboard/`` so they never collide with the daemon's own routes; behind the same
middleware (token, or the signed-in page + CSRF); typed for ``/openapi.json``:

- ``GET /v1/dashboard/backups``: backups in ``backups/``, newest first, with verified state;
- ``POST /v1/dashboard/backups``: "back up now" (online, verified; runs in a thread);
- ``GET /v1/dashboard/services``: the supervisor's status of every service (empty while the
  daemon runs no supervisor); ``POST /v1/dashboard/services/{name}/{start|stop|restart}``.

When the daemon grows equivalent routes, ``app.js``'s ``ROUTES`` table is the one place to
switch, and this module goes away.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from bastion.api.models import Name
from bastion.api.state import DaemonState, get_state
from bastion.errors import ServiceNotFound

__all__ = ["router"]

router = APIRouter(prefix="/v1/dashboard", tags=["dashboard"])
State = Annotated[DaemonState, Depends(get_state)]


class BackupRow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    db: str
    created_at: str
    size_bytes: int
    verified: bool
    problem: str | None


def _backup_row(info: Any) -> BackupRow:
    return BackupRow(
        name=info.path.name,
        db=info.db_name,
        created_at=info.created_at.isoformat(),
        size_bytes=info.size_bytes,
        verified=info.verified,
        problem=info.problem,
    )


@router.get("/backups", response_model=list[BackupRow])
async def list_backups(state: State) -> list[BackupRow]:
    """Backups in ``backups/``, newest first, with their verified state (manifest check)."""
    from bastion.store.backup import list_backups as _list

    infos = await asyncio.to_thread(_list, state.home.config.backups_dir)
    return [_backup_row(i) for i in infos]


@router.post("/backups", response_model=BackupRow, status_code=201)
async def backup_now(state: State) -> BackupRow:
    """An online backup of ``bastion.db`` now, deep-verified (hash + quick_check) before it is
    reported; the backup's own event ("backup.created") lands in the events table."""
    from bastion.store.backup import verify_backup

    def run() -> Any:
        result = state.home.backup()
        return verify_backup(result.path, deep=True)

    return _backup_row(await asyncio.to_thread(run))


class ServiceRow(BaseModel):
    """One service as the board shows it (the supervisor's ``ServiceStatus``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    state: str
    reason: str = ""
    since: float | None = None
    pid: int | None = None
    ready: bool | None = None
    breaker: str = "closed"
    attempt: int = 0
    restarts_in_window: int = 0
    trips: int = 0
    next_start_at: float | None = None
    last_exit_code: int | None = None
    autostart: bool = True


def _supervisor(state: DaemonState) -> Any:
    return getattr(state.home, "supervisor", None)


def _row(status: Any) -> ServiceRow:
    data = status.to_dict() if hasattr(status, "to_dict") else dict(status)
    return ServiceRow.model_validate(data)


@router.get("/services", response_model=list[ServiceRow])
async def list_services(state: State) -> list[ServiceRow]:
    """Every supervised service's state, breaker and restart counts, by name."""
    supervisor = _supervisor(state)
    if supervisor is None:
        return []
    lister = getattr(supervisor, "status_all", None) or supervisor.list
    statuses = lister()
    if inspect.isawaitable(statuses):
        statuses = await statuses
    return sorted((_row(s) for s in statuses), key=lambda r: r.name)


@router.post("/services/{name}/{action}", response_model=ServiceRow)
async def service_action(
    state: State, name: Name, action: Literal["start", "stop", "restart"]
) -> ServiceRow:
    """Start, stop or restart a service through the running supervisor."""
    supervisor = _supervisor(state)
    if supervisor is None:
        raise ServiceNotFound(
            f"no service {name!r}: this daemon runs no supervisor",
            hint="Declare services in <home>/services/*.toml and restart `bastion serve`.",
        )
    result = getattr(supervisor, action)(name)
    if inspect.isawaitable(result):
        result = await result
    return _row(result)
