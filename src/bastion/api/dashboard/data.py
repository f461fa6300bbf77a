"""Routes the dashboard needs that the daemon's ``/v1`` API does not serve (yet).

Under ``/v1/dashboard/`` so they never collide with the daemon's own routes; behind the same
middleware (token, or the signed-in page + CSRF); typed for ``/openapi.json``:

- ``GET /v1/dashboard/backups``: backups in ``backups/``, newest first, with verified state;
- ``POST /v1/dashboard/backups``: "back up now": starts an online backup in a thread (one at
  a time) and answers 202; ``GET /v1/dashboard/backups/job`` reports its pages copied, then
  the deep-verified result or the error;
- ``POST /v1/dashboard/checks``: run the daemon's ``/v1/db/check`` and keep its outcome as a
  ``db.checked`` event, so the page can show the last check result after a reload;
- ``GET /v1/dashboard/db/samples``: the database's size, WAL size and free bytes over time
  (the scheduler's ``db-sample`` job, :mod:`bastion.store.samples`), for the size chart.

When the daemon grows equivalent routes, ``app.js``'s ``ROUTES`` table is the one place to
switch, and this module goes away.
"""

# No `from __future__ import annotations` here: FastAPI and pydantic would turn every string
# annotation of the routes and models back into an object at start-up (a ForwardRef compiled
# and evaluated each, ~5 ms of the daemon's start; issue 22 §7). tests/api/test_fastapi_v1.py

import asyncio
import dataclasses
import logging
import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict

from bastion.api.deferred_route import DeferredAPIRoute
from bastion.api.models import RESPONSE_CONFIG, CheckResult, ErrorBody, TimeParam, UtcTime
from bastion.api.routes.system import db_check
from bastion.api.state import DaemonState, get_state, request_actor
from bastion.domains.activity import ActivityRepo
from bastion.domains.events.repo import emit_tx
from bastion.errors import BastionError, Conflict
from bastion.store import WriteTx

__all__ = ["BackupJobs", "router"]

log = logging.getLogger("bastion.api.dashboard")

router = APIRouter(prefix="/v1/dashboard", tags=["dashboard"], route_class=DeferredAPIRoute)
State = Annotated[DaemonState, Depends(get_state)]
Actor = Annotated[str, Depends(request_actor)]


class BackupRow(BaseModel):
    model_config = RESPONSE_CONFIG

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


class SizeSampleOut(BaseModel):
    model_config = RESPONSE_CONFIG

    ts: UtcTime
    size_bytes: int
    wal_bytes: int
    free_bytes: int


@router.get("/db/samples", response_model=list[SizeSampleOut])
async def db_samples(
    state: State,
    since: Annotated[
        TimeParam, Query(description="From this time, inclusive: RFC 3339 or Unix seconds.")
    ] = None,
) -> list[SizeSampleOut]:
    """``bastion.db``'s size samples (oldest first), as the daemon's scheduler recorded them."""
    from bastion.store.samples import read_samples

    home = state.home
    samples = await asyncio.to_thread(read_samples, home.config.run_dir, home.db.name, since=since)
    return [SizeSampleOut(**s.to_dict()) for s in samples]


JobState = Literal["idle", "running", "done", "failed"]


class BackupJobOut(BaseModel):
    model_config = RESPONSE_CONFIG

    state: JobState
    done_pages: int
    total_pages: int
    backup: BackupRow | None = None
    error: ErrorBody | None = None


@dataclasses.dataclass
class BackupJobs:
    """The page's "back up now": at most one backup at a time, its progress and its outcome.

    Mutable and owned by one app instance (``Dashboard.backups``). The copy runs in a worker
    thread, which writes ``done``/``total`` as apsw's backup steps go; the event loop reads
    them. ``_lock`` only guards the start, so two clicks cannot start two backups.
    """

    state: JobState = "idle"
    done: int = 0
    total: int = 0
    backup: BackupRow | None = None
    error: ErrorBody | None = None
    _task: asyncio.Task[None] | None = None
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def snapshot(self) -> BackupJobOut:
        return BackupJobOut(
            state=self.state,
            done_pages=self.done,
            total_pages=self.total,
            backup=self.backup,
            error=self.error,
        )

    def start(self, state: DaemonState, actor: str) -> BackupJobOut:
        with self._lock:
            if self.state == "running":
                raise Conflict(
                    "a backup is already running",
                    hint="Wait for it: GET /v1/dashboard/backups/job reports its progress.",
                )
            self.state, self.done, self.total = "running", 0, 0
            self.backup = self.error = None
        self._task = asyncio.get_running_loop().create_task(self._run(state, actor))
        return self.snapshot()

    def _progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    async def _run(self, state: DaemonState, actor: str) -> None:
        from bastion.store.backup import verify_backup

        def work() -> Any:
            result = state.home.backup(progress=self._progress)
            # Deep: the hash and a quick_check of the copy, before the page calls it verified.
            info = verify_backup(result.path, deep=True, key=state.home.db.key)
            state.home.activity.record(
                actor, "db.backup", info.path.name, {"verified": info.verified}
            )
            return info

        try:
            info = await asyncio.to_thread(work)
        except BastionError as err:
            self.error = ErrorBody(code=err.code, message=err.message, hint=err.hint or "")
            self.state = "failed"
        except Exception:
            log.exception("backup from the dashboard failed")
            self.error = ErrorBody(
                code="internal_error", message="internal error", hint="See the daemon's log."
            )
            self.state = "failed"
        else:
            self.backup = _backup_row(info)
            self.state = "done"


def _jobs(request: Request) -> BackupJobs:
    jobs: BackupJobs = request.app.state.dashboard.backups
    return jobs


@router.post("/backups", response_model=BackupJobOut, status_code=202)
async def backup_now(state: State, request: Request, actor: Actor) -> BackupJobOut:
    """Start an online backup of ``bastion.db``; follow it at ``/v1/dashboard/backups/job``.

    The copy is deep-verified (hash + quick_check) before the job reports it; the backup's
    own event ("backup.created") lands in the events table, and the activity feed records
    who asked for it. One at a time: a second request while one runs is a 409.
    """
    return _jobs(request).start(state, actor)


@router.get("/backups/job", response_model=BackupJobOut)
async def backup_job(request: Request) -> BackupJobOut:
    """The last "back up now": idle, running (pages copied of total), done or failed."""
    return _jobs(request).snapshot()


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    kind: Literal["quick", "integrity", "foreign_keys"] = "quick"


#: Event kind of a check run from the page (data: kind, ok, problems).
CHECK_EVENT = "db.checked"


@router.post("/checks", response_model=CheckResult)
async def run_check(state: State, body: CheckRequest, actor: Actor) -> CheckResult:
    """Run a read-only check of ``bastion.db``; keep its outcome as an event and record who
    asked for it in the activity feed (as "back up now" and service actions are)."""
    result = await db_check(state, body.kind)
    data = {"kind": result.kind, "ok": result.ok, "problems": len(result.problems)}
    subject = state.home.db.name

    def unit(tx: WriteTx) -> None:  # one transaction: the event and who asked, or neither
        emit_tx(tx, CHECK_EVENT, subject, data)
        ActivityRepo.record_tx(tx, actor, "db.check", subject, data)

    await state.home.db.awrite(unit)
    return result
