"""Settings: get, set, delete, list by prefix (``settings`` in ``bastion.db``).

``GET /v1/settings/{key}`` is the hot read apps make on every start-up and the API
benchmark's subject: it is an ``async`` handler on the store's inline point read, so it
costs no thread hop. Writes go through the repository (one write unit, plus the
``setting.changed`` event), on a thread.

Values follow the settings domain's rules (:mod:`bastion.domains.settings.model`: depth
64, 1 MiB), checked before anything is written; a stored value that breaks them (written by
an older version or another tool) lists as an error row and reads as 409
``setting_unreadable``, never as a failure of the whole listing.
"""

# No `from __future__ import annotations` here: FastAPI and pydantic would turn every string
# annotation of the routes and models back into an object at start-up (a ForwardRef compiled
# and evaluated each, ~5 ms of the daemon's start; issue 22 §7). tests/api/test_fastapi_v1.py

import asyncio
import functools
import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import Field, StrictBool
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from bastion._time import rfc3339
from bastion.api.deferred_route import DeferredAPIRoute
from bastion.api.errors import error_body
from bastion.api.ints import IntQuery
from bastion.api.models import MAX_OFFSET, Page, UtcTime, _Model, _Request
from bastion.api.state import DaemonState, get_state
from bastion.domains.settings import queries as q
from bastion.domains.settings.model import MAX_DEPTH, MAX_VALUE_BYTES, decode_value
from bastion.domains.settings.repo import Setting
from bastion.errors import NotFound

__all__ = ["fast_routes", "router"]

router = APIRouter(prefix="/v1/settings", tags=["settings"], route_class=DeferredAPIRoute)
State = Annotated[DaemonState, Depends(get_state)]

#: Keys: dotted names such as ``ui.theme`` or ``speech.model``.
KEY_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,255}$"
_KEY_RE = re.compile(KEY_PATTERN)
KeyPath = Annotated[str, Path(pattern=KEY_PATTERN, description="A setting key, e.g. `ui.theme`.")]
#: Stored texts this short nest at most MAX_DEPTH levels: the hot read skips the check.
_SHORT_TEXT = 2 * MAX_DEPTH + 1
#: Longer texts are checked on a thread (a 1 MiB parse would hold the loop for ms).
_INLINE_CHECK = 64 * 1024


class SettingOut(_Model):
    key: str
    value: Any = Field(description="Any JSON value (null on an error row).")
    updated_at: UtcTime
    error: str | None = Field(
        default=None,
        description="Set on a listing's row whose stored value cannot be read back "
        "(written by an older version or another tool); delete or set the key again.",
    )

    @classmethod
    def of(cls, s: Setting) -> "SettingOut":
        return cls(key=s.key, value=s.value, updated_at=s.updated_at, error=s.error)


class SettingIn(_Request):
    value: Any = Field(
        description=f"Any JSON value except null (delete the key instead), nested at most "
        f"{MAX_DEPTH} levels and at most {MAX_VALUE_BYTES} bytes as compact JSON.",
        json_schema_extra={"not": {"type": "null"}},
    )
    allow_plaintext: StrictBool = Field(
        default=False,
        description="Store the value even though it looks like a credential (otherwise "
        "`422 plaintext_credential`: keep credentials in the vault, /v1/secrets).",
    )


class Deleted(_Model):
    key: str
    deleted: bool = True


@router.get("", response_model=Page[SettingOut])
async def list_settings(
    state: State,
    prefix: Annotated[str, Query(max_length=256)] = "",
    limit: Annotated[int, IntQuery(ge=1, le=1000)] = 200,
    offset: Annotated[int, IntQuery(ge=0, le=MAX_OFFSET)] = 0,
) -> Page[SettingOut]:
    """Settings whose key starts with ``prefix``, by key."""
    rows = await asyncio.to_thread(state.home.settings.list, prefix)
    window = rows[offset : offset + limit]
    return Page[SettingOut](
        items=[SettingOut.of(s) for s in window],
        limit=limit,
        total=len(rows),
        offset=offset,
        next_offset=offset + limit if offset + limit < len(rows) else None,
    )


@router.get("/{key}", response_model=SettingOut)
async def get_setting(request: Request, key: KeyPath) -> Response:
    """One setting; 404 if it is not set."""
    return await _read_setting(request, key)


async def _read_setting(request: Request, key: str) -> Response:
    # The hot read: no model round trip. The stored value is JSON text already, so the body
    # is assembled around it rather than parsed and dumped again; ``SettingOut`` documents
    # the shape, and the schemathesis run checks the answers against it.
    state: DaemonState = request.app.state.daemon
    row = await state.home.db.aquery_one(q.GET, (key,))
    if row is None:
        raise NotFound(f"setting {key!r} is not set", hint="List them with GET /v1/settings.")
    text: str | bytes = row[0]
    if len(text) > _SHORT_TEXT:
        # Only a text this long can break the value rules (a row from an older version or
        # another tool): check it, off the loop when parsing it could take a while.
        if len(text) > _INLINE_CHECK:
            await asyncio.to_thread(decode_value, key, text)
        else:
            decode_value(key, text)
    body = b'{"key":%s,"value":%s,"updated_at":%s,"error":null}' % (
        json.dumps(key).encode(),
        text.encode() if isinstance(text, str) else bytes(text),
        json.dumps(rfc3339(float(row[1]))).encode(),
    )
    return Response(body, media_type="application/json")


async def _fast_get_setting(request: Request) -> Response:
    key = request.path_params["key"]
    if not _KEY_RE.match(key):
        return JSONResponse(
            error_body(
                "invalid_request",
                f"invalid request: path.key: String should match pattern '{KEY_PATTERN}'",
                "Check the request against /openapi.json.",
            ),
            status_code=422,
        )
    return await _read_setting(request, key)


def fast_routes() -> list[BaseRoute]:
    """Plain Starlette routes for the hottest reads, placed before FastAPI's own.

    FastAPI's per-request dependency solving and route matching cost the settings read
    more than half its throughput (bench/api.py). This route answers exactly what the
    documented ``GET /v1/settings/{key}`` answers (same validation, same body, same errors:
    it still runs behind the security middleware and the error table); the FastAPI route
    stays for the OpenAPI document, and the schemathesis run holds the two together.
    """
    return [Route("/v1/settings/{key}", _fast_get_setting, methods=["GET"])]


@router.put("/{key}", response_model=SettingOut)
async def set_setting(state: State, key: KeyPath, body: SettingIn) -> SettingOut:
    """Store any JSON value under ``key`` (records a ``setting.changed`` event). A value that
    looks like a credential is refused (422 ``plaintext_credential``) unless
    ``allow_plaintext`` is true; a value nested deeper than the limit or larger than it is a
    422 ``invalid_value``. Either way nothing is stored."""
    if body.value is None:
        raise _null_value()
    setting = await asyncio.to_thread(
        functools.partial(
            state.home.settings.set, key, body.value, allow_plaintext=body.allow_plaintext
        )
    )
    return SettingOut.of(setting)


@router.delete("/{key}", response_model=Deleted)
async def delete_setting(state: State, key: KeyPath) -> Deleted:
    """Remove ``key``; 404 if it was not set."""
    await asyncio.to_thread(state.home.settings.delete, key)
    return Deleted(key=key)


def _null_value() -> Exception:
    from bastion.errors import InvalidRequest

    return InvalidRequest(
        "a setting's value cannot be null",
        hint="Delete the key with DELETE /v1/settings/{key} instead.",
    )
