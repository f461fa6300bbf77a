"""Routes the dashboard needs that the daemon's ``/v1`` API does not serve (yet).

Under ``/v1/dashboard/`` so they never collide with the daemon's own routes; behind the same
middleware (token, or the signed-in page + CSRF); typed for ``/openapi.json``:

- ``GET /v1/dashboard/backups``: backups in ``backups/``, newest first, with verified state;
- ``POST /v1/dashboard/backups``: "back up now" (online, verified; runs in a thread);
- ``POST /v1/dashboard/checks``: run the daemon's ``/v1/db/check`` and keep its outcome as a
  ``db.checked`` event, so the page can show the last check result after a reload.

When the daemon grows equivalent routes, ``app.js``'s ``ROUTES`` table is the one place to
switch, and this module goes away.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict

from bastion.api.models import CheckResult
from bastion.api.routes.system import db_check
from bastion.api.state import DaemonState, get_state

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
async def backup_now(state: State, request: Request) -> BackupRow:
    """An online backup of ``bastion.db`` now, deep-verified (hash + quick_check) before it is
    reported; the backup's own event ("backup.created") lands in the events table, and the
    activity feed records who asked for it."""
    from bastion.store.backup import verify_backup

    actor = "api" if "authorization" in request.headers else "dashboard"

    def run() -> Any:
        result = state.home.backup()
        info = verify_backup(result.path, deep=True)
        state.home.activity.record(actor, "db.backup", info.path.name, {"verified": info.verified})
        return info

    return _backup_row(await asyncio.to_thread(run))


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["quick", "integrity", "foreign_keys"] = "quick"


#: Event kind of a check run from the page (data: kind, ok, problems).
CHECK_EVENT = "db.checked"


@router.post("/checks", response_model=CheckResult)
async def run_check(state: State, body: CheckRequest) -> CheckResult:
    """Run a read-only check of ``bastion.db`` and record its outcome as an event."""
    result = await db_check(state, body.kind)
    data = {"kind": result.kind, "ok": result.ok, "problems": len(result.problems)}
    await asyncio.to_thread(state.home.events.emit, CHECK_EVENT, state.home.db.name, data)
    return result
