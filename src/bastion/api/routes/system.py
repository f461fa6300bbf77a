"""Liveness, daemon status, shutdown, and the database's status/checks/migrations."""

# No `from __future__ import annotations` here: FastAPI and pydantic would turn every string
# annotation of the routes and models back into an object at start-up (a ForwardRef compiled
# and evaluated each, ~5 ms of the daemon's start; issue 22 §7). tests/api/test_fastapi_v1.py

import asyncio
import dataclasses
import functools
import os
import platform
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from bastion.__about__ import __api_version__, __version__
from bastion._time import rfc3339
from bastion.api.deferred_route import DeferredAPIRoute
from bastion.api.ints import IntQuery
from bastion.api.models import (
    MAX_OFFSET,
    CheckResult,
    DbStatus,
    Health,
    JobInfo,
    MigrationRow,
    Page,
    RequestCounters,
    ShutdownAccepted,
    Status,
)
from bastion.api.state import DaemonState, get_state
from bastion.errors import BastionError
from bastion.store import ReadTx

__all__ = ["router"]

router = APIRouter(route_class=DeferredAPIRoute)
State = Annotated[DaemonState, Depends(get_state)]

#: Problems reported per check, at most: a corrupt file can yield thousands of lines.
MAX_PROBLEMS = 100


@router.get("/health", tags=["system"], response_model=Health)
async def health() -> Health:
    """Liveness. No token needed; says that the daemon answers, its package and API versions
    (a client checks the API major before anything else), and its process id (a client that
    read the port from ``run/daemon.json`` checks that it is the daemon the file names)."""
    return Health(version=__version__, api_version=__api_version__, pid=os.getpid())


# HEAD answers as GET does, without the body (load balancers and uptime probes send it).
# Kept out of the schema: a HEAD operation has no body to check against `Health`.
router.add_api_route(
    "/health", health, methods=["HEAD"], response_model=Health, include_in_schema=False
)


async def services_summary(state: DaemonState) -> dict[str, Any]:
    try:
        # The daemon starts its supervisor right after its handshake: a summary asked for
        # meanwhile waits for it, so it counts the services rather than none.
        await state.started()
    except Exception as err:  # the start failed: said here, the rest of the status stands
        error = err.to_dict() if isinstance(err, BastionError) else {"code": "internal"}
        return {"supervised": False, "total": 0, "by_state": {}, "error": error}
    if state.supervisor is None:
        return {"supervised": False, "total": 0, "by_state": {}}
    counts: dict[str, int] = {}
    statuses = state.supervisor.list()
    for item in statuses:
        counts[item.state] = counts.get(item.state, 0) + 1
    sup = state.supervisor
    return {
        "supervised": True,
        "total": len(statuses),
        "by_state": counts,
        # What contains a service's processes here (a cgroup v2 of its own, or the group and
        # the shim and why not), and why the last run that could not join one could not.
        "containment": sup.cgroups.describe(),
        "cgroup_problem": sup.cgroup_problem,
    }


@router.get("/v1/status", tags=["system"], response_model=Status)
async def status(state: State) -> Status:
    """Versions, uptime, store posture, vault backend, services summary, scheduled jobs."""
    home = state.home
    posture = home.db.posture
    scheduler = state.scheduler
    jobs = [JobInfo(**dataclasses.asdict(j)) for j in scheduler.status()] if scheduler else []
    counters = state.counters
    return Status(
        version=__version__,
        api_version=__api_version__,
        python=platform.python_version(),
        sqlite_version=posture.sqlite_version,
        pid=os.getpid(),
        port=state.port,
        started_at=state.started_at,
        uptime_s=round(state.uptime_s, 3),
        home=str(home.config.home),
        store={"path": str(home.db.path), "posture": dataclasses.asdict(posture)},
        vault={
            "backend": home.config.vault.backend,
            "reveal_enabled": home.config.vault.allow_reveal,
        },
        services=await services_summary(state),
        jobs=jobs,
        requests=RequestCounters(handled=counters.handled, rejected=dict(counters.rejected)),
    )


@router.post("/v1/shutdown", tags=["system"], response_model=ShutdownAccepted, status_code=202)
async def shutdown(state: State) -> ShutdownAccepted:
    """Stop the daemon gracefully (what `bastion stop` calls): services, logs, databases."""
    if state.request_shutdown is not None:
        state.request_shutdown()
    return ShutdownAccepted(pid=os.getpid())


@router.get("/v1/db/status", tags=["database"], response_model=DbStatus)
async def db_status(state: State) -> DbStatus:
    """Path, posture as read back, sizes, SQLite version of bastion.db."""
    data = await asyncio.to_thread(state.home.status)
    for ns in data.get("migrations", []):  # untyped dicts: their times as every time is sent
        if isinstance(ns.get("last_applied_at"), int | float):
            ns["last_applied_at"] = rfc3339(ns["last_applied_at"])
    return DbStatus(**data)


_CHECKS: dict[str, str] = {
    "quick": "PRAGMA quick_check",
    "integrity": "PRAGMA integrity_check",
    "foreign_keys": "PRAGMA foreign_key_check",
}


@router.get("/v1/db/check", tags=["database"], response_model=CheckResult)
async def db_check(
    state: State,
    kind: Annotated[Literal["quick", "integrity", "foreign_keys"], Query()] = "quick",
) -> CheckResult:
    """Run `quick_check`, `integrity_check` or `foreign_key_check` (read-only)."""
    # Here, not at the top: the daemon imports this router before its handshake, and the
    # checks' module is for a check (issue 22 §7).
    from bastion.store.stats import check_rows, foreign_key_rows, fts5_after

    sql = _CHECKS[kind]

    def run(tx: ReadTx) -> list[str]:
        if kind == "foreign_keys":
            rows = foreign_key_rows(tx)
            return [f"{r[0]} rowid {r[1]} -> {r[2]}" for r in rows[:MAX_PROBLEMS]]
        found = check_rows(tx, sql.removeprefix("PRAGMA "))
        return [r for r in found[:MAX_PROBLEMS] if r != "ok"]

    problems = await state.home.db.aread(run)
    if kind != "foreign_keys":
        # What the pragmas leave out of FTS5 indexes (the integrity check also compares each
        # index with its content table: seconds on a million log lines, so on a thread).
        fts = await asyncio.to_thread(
            functools.partial(fts5_after, compare=kind == "integrity"), state.home.db, problems
        )
        problems = [*problems, *fts.findings][:MAX_PROBLEMS]
    return CheckResult(kind=kind, ok=not problems, problems=problems)


@router.get("/v1/db/migrations", tags=["database"], response_model=Page[MigrationRow])
async def db_migrations(
    state: State,
    namespace: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, IntQuery(ge=1, le=1000)] = 200,
    offset: Annotated[int, IntQuery(ge=0, le=MAX_OFFSET)] = 0,
) -> Page[MigrationRow]:
    """Applied migrations (per namespace, in order); pending ones are in /v1/db/status."""

    def run(tx: ReadTx) -> tuple[list[MigrationRow], int]:
        exists = tx.scalar(
            "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='schema_migrations'"
        )
        if not exists:
            return [], 0
        where, params = ("WHERE namespace = ?", [namespace]) if namespace else ("", [])
        total = int(tx.scalar(f"SELECT count(*) FROM schema_migrations {where}", params))
        rows = tx.query(
            f"SELECT namespace, id, checksum, applied_at FROM schema_migrations {where} "
            "ORDER BY namespace, id LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [
            MigrationRow(
                namespace=str(r[0]),
                id=str(r[1]),
                checksum=str(r[2]),
                applied_at=None if r[3] is None else float(r[3]),
            )
            for r in rows
        ], total

    items, total = await state.home.db.aread(run)
    return Page[MigrationRow](
        items=items,
        limit=limit,
        total=total,
        offset=offset,
        next_offset=offset + limit if offset + limit < total else None,
    )
