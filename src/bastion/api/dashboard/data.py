"""Routes the dashboard needs that the daemon's ``/v1`` API does not serve (yet).

All under ``/v1/dashboard/`` so they never collide with the daemon's own routes, all behind
the same middleware (token or signed-in page + CSRF), all typed for ``/openapi.json``:

- secrets: list metadata, set a value (write-only), delete. No route here returns a value;
  the response models have no field that could hold one.
- backups: list with verified state, "back up now" (online, verified; runs in a thread).
- events and activity: the newest rows of the ``events``/``activity`` tables.

When the daemon grows equivalent routes, ``app.js``'s ``ROUTES`` table is the one place to
switch, and this module shrinks.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from bastion.api.models import Name
from bastion.api.state import DaemonState, get_state
from bastion.store import ReadTx

__all__ = ["router"]

router = APIRouter(prefix="/v1/dashboard", tags=["dashboard"])
State = Annotated[DaemonState, Depends(get_state)]
#: The audit actor for changes made through the page.
ACTOR = "dashboard"
SCOPE_PATTERN = r"^[A-Za-z0-9_.@:-]{1,100}$"
Scope = Annotated[str, Query(pattern=SCOPE_PATTERN)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRow(_Model):
    name: str
    scope: str
    backend: str
    created_at: float
    updated_at: float
    last_used_at: float | None
    version: int
    flags: list[str]


class SecretWrite(_Model):
    # The value is accepted here and nowhere echoed: no response model has a field for it.
    value: str = Field(min_length=1, max_length=64 * 1024, repr=False)
    scope: str = Field(default="global", pattern=SCOPE_PATTERN)


class BackupRow(_Model):
    name: str
    db: str
    created_at: str
    size_bytes: int
    verified: bool
    problem: str | None


class FeedRow(_Model):
    id: int
    ts: float
    kind: str
    subject: str
    actor: str | None = None
    data: dict[str, Any] | None = None


def _secret_row(meta: Any) -> SecretRow:
    return SecretRow(
        name=meta.name,
        scope=meta.scope,
        backend=meta.backend,
        created_at=meta.created_at,
        updated_at=meta.updated_at,
        last_used_at=meta.last_used_at,
        version=meta.version,
        flags=["set"],
    )


@router.get("/secrets", response_model=list[SecretRow])
async def list_secrets(state: State) -> list[SecretRow]:
    """Every stored secret's metadata (names, scopes, backend, times). Never a value."""
    # A lambda, so that opening the vault (lazy, may touch the keychain) runs in the thread.
    metas = await asyncio.to_thread(lambda: state.home.vault.list())  # noqa: PLW0108
    return [_secret_row(m) for m in metas]


@router.put("/secrets/{name}", response_model=SecretRow)
async def set_secret(state: State, name: Name, body: SecretWrite) -> SecretRow:
    """Set or replace a secret's value (write-only: the answer is metadata)."""
    meta = await asyncio.to_thread(
        lambda: state.home.vault.set(name, body.value, body.scope, actor=ACTOR)
    )
    return _secret_row(meta)


@router.delete("/secrets/{name}", response_model=SecretRow)
async def delete_secret(state: State, name: Name, scope: Scope = "global") -> SecretRow:
    """Delete a secret from the backend and the index."""
    meta = await asyncio.to_thread(lambda: state.home.vault.delete(name, scope, actor=ACTOR))
    return _secret_row(meta)


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
    """An online backup of ``bastion.db`` now, verified before it is listed."""
    from bastion.store.backup import verify_backup

    def run() -> Any:
        result = state.home.backup()
        return verify_backup(result.path, deep=True)

    return _backup_row(await asyncio.to_thread(run))


def _feed(table: str, prefix: str, limit: int) -> Any:
    def read(tx: ReadTx) -> list[FeedRow]:
        exists = tx.scalar(
            "SELECT count(*) FROM sqlite_master WHERE type='table' AND name=?", (table,)
        )
        if not exists:
            return []
        if table == "events":
            rows = tx.query(
                "SELECT id, ts, kind, subject, NULL, data FROM events "
                "WHERE kind >= ? AND kind < ? ORDER BY id DESC LIMIT ?",
                (prefix, prefix + "\uffff", limit),
            )
        else:
            rows = tx.query(
                "SELECT id, ts, action, subject, actor, details FROM activity "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            )
        return [
            FeedRow(
                id=int(r[0]),
                ts=float(r[1]),
                kind=str(r[2]),
                subject=str(r[3] or ""),
                actor=None if r[4] is None else str(r[4]),
                data=_json_object(r[5]),
            )
            for r in rows
        ]

    return read


def _json_object(text: Any) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(str(text))
    except ValueError:
        return None
    return value if isinstance(value, dict) else {"value": value}


@router.get("/events", response_model=list[FeedRow])
async def events(
    state: State,
    prefix: Annotated[str, Query(pattern=r"^[a-z_.]{0,40}$")] = "",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[FeedRow]:
    """The newest events whose kind starts with ``prefix`` (e.g. ``backup.``, ``store.``)."""
    rows: list[FeedRow] = await state.home.db.aread(_feed("events", prefix, limit))
    return rows


@router.get("/activity", response_model=list[FeedRow])
async def activity(state: State, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[FeedRow]:
    """The newest activity-feed rows (who did what to what)."""
    rows: list[FeedRow] = await state.home.db.aread(_feed("activity", "", limit))
    return rows
