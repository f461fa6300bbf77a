"""Secrets: list, status, metadata, set, delete, and the separate, audited reveal.

No route but ``reveal`` ever returns a value: list/status/metadata come from the vault's
index only, and a set answers with the new metadata. ``reveal`` is a POST (never cached,
never prefetched, never a link), is recorded in the vault's audit log, and answers 403 when
``vault.allow_reveal = false``. Changes and reads are attributed to ``api`` (bearer token) or
``dashboard`` (the signed-in page) in the audit log and the activity feed alike.

Vault calls are blocking (the OS keychain is a D-Bus round trip, bounded by its timeout), so
these handlers are plain ``def``: FastAPI runs them on its thread pool, off the event loop.
"""

# No `from __future__ import annotations` here: FastAPI and pydantic would turn every string
# annotation of the routes and models back into an object at start-up (a ForwardRef compiled
# and evaluated each, ~5 ms of the daemon's start; issue 22 §7). tests/api/test_fastapi_v1.py

import re
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import Field, SecretStr

from bastion.api.deferred_route import DeferredAPIRoute
from bastion.api.ints import IntQuery
from bastion.api.models import MAX_OFFSET, ErrorBody, Page, UtcTime, _Model, _Request
from bastion.api.state import DaemonState, get_state, request_actor
from bastion.errors import Forbidden, InvalidName

if TYPE_CHECKING:
    # Only a type here: the vault package (cryptography, argon2) loads when a route first
    # uses the vault, not with the server stack (issue 22 §7).
    from bastion.vault import SecretMeta

__all__ = ["router"]

router = APIRouter(prefix="/v1/secrets", tags=["secrets"], route_class=DeferredAPIRoute)
State = Annotated[DaemonState, Depends(get_state)]
Actor = Annotated[str, Depends(request_actor)]

#: The vault's own name and scope rules, as path/query patterns (the vault re-checks them).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$"
SCOPE = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,99}$"
#: Values larger than this are refused before reaching the vault (its own cap may be lower).
MAX_VALUE_CHARS = 256 * 1024

NamePath = Annotated[str, Path(pattern=NAME_PATTERN, description="The secret's name.")]
#: A secret name's characters (the vault's rule; its length is the vault's to check).
_NAME_CHARS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
ScopeQuery = Annotated[str, Query(pattern=SCOPE, description="`global`, `bot:42`, ...")]


class SecretInfo(_Model):
    """What the index knows about a secret. Never the value, nor its fingerprint."""

    scope: str
    name: str
    backend: str
    created_at: UtcTime
    updated_at: UtcTime
    last_used_at: UtcTime | None
    size: int
    version: int

    @classmethod
    def of(cls, meta: "SecretMeta") -> "SecretInfo":
        return cls(
            scope=meta.scope,
            name=meta.name,
            backend=meta.backend,
            created_at=meta.created_at,
            updated_at=meta.updated_at,
            last_used_at=meta.last_used_at,
            size=meta.size,
            version=meta.version,
        )


class SecretFlag(_Model):
    configured: bool
    updated_at: UtcTime | None
    version: int | None


class SecretsStatus(_Model):
    backend: str
    why: str
    #: Whether the value backend can be used right now (keychain reachable and unlocked, file
    #: key present). Listing works either way: it reads the index only.
    available: bool
    #: Why it cannot, and how to fix it (the backend's own error), when ``available`` is false.
    problem: ErrorBody | None
    scope: str
    count: int
    secrets: dict[str, SecretFlag]


class SetSecret(_Request):
    value: SecretStr = Field(min_length=1, max_length=MAX_VALUE_CHARS)
    scope: Annotated[str, Field(pattern=SCOPE)] = "global"
    #: Compare-and-set: 0 = must not exist yet; N = must be at version N.
    expected_version: int | None = Field(default=None, ge=0)


class RevealRequest(_Request):
    scope: Annotated[str, Field(pattern=SCOPE)] = "global"


class Revealed(_Model):
    scope: str
    name: str
    version: int
    value: str


@router.get("", response_model=Page[SecretInfo])
def list_secrets(
    state: State,
    *,
    scope: Annotated[str | None, Query(pattern=SCOPE)] = None,
    sort: Literal["name", "updated_at", "created_at"] = "name",
    order: Literal["asc", "desc"] = "asc",
    limit: Annotated[int, IntQuery(ge=1, le=500)] = 100,
    offset: Annotated[int, IntQuery(ge=0, le=MAX_OFFSET)] = 0,
) -> Page[SecretInfo]:
    """Names and metadata of stored secrets (from the index; works on every backend)."""
    # Paged in SQL off the index that holds the order: a page costs its rows, not the vault.
    page = state.home.vault.page(
        scope, sort=sort, descending=order == "desc", limit=limit, offset=offset
    )
    total = page.total or 0
    nxt = offset + limit if offset + limit < total else None
    return Page[SecretInfo](
        items=[SecretInfo.of(m) for m in page.items],
        total=total,
        limit=limit,
        offset=offset,
        next_offset=nxt,
    )


@router.get("/status", response_model=SecretsStatus)
def secrets_status(
    state: State,
    scope: ScopeQuery = "global",
    names: Annotated[
        str | None,
        Query(
            max_length=8000,
            description="Comma-separated declared names; each gets a `configured` flag.",
        ),
    ] = None,
) -> SecretsStatus:
    """Which declared names are configured (seed 001's `*_configured` flags), and whether
    the backend can store and read values at all (`available`; `problem` says why not).

    A client can tell a user that the keychain is missing before they type a value, instead
    of after a `PUT` fails with 503.
    """
    declared = [n.strip() for n in names.split(",") if n.strip()] if names else None
    for number, name in enumerate(declared or (), 1):
        # Checked here, not by the vault, whose refusal quotes the name: a name that is none
        # may be a secret pasted into the list. Its place in the list is enough to find it.
        # (Its length is the vault's to refuse: that message quotes no name.)
        if _NAME_CHARS.fullmatch(name) is None:
            raise InvalidName(
                f"names: name {number} of the list has characters outside A-Z a-z 0-9 _ . - "
                "(or does not start with a letter or digit); it is not repeated here (it "
                "may hold a secret)",
                hint="Send secret names separated by commas, e.g. OPENAI_API_KEY,stt.url.",
                kind="secret name",
            )
    vault = state.home.vault
    data = vault.status(declared, scope=scope)
    # Opens the backend (the keychain: bounded by vault.keychain_timeout_s); a failure is
    # reported here, not raised.
    info = vault.backend_info()
    problem = info.get("error") if not info["available"] else None
    return SecretsStatus(
        backend=data["backend"],
        why=data["why"],
        available=bool(info["available"]),
        problem=None if problem is None else ErrorBody(**problem),
        scope=data["scope"],
        count=data["count"],
        secrets={k: SecretFlag(**v) for k, v in data["secrets"].items()},
    )


class ScopeDeleted(_Model):
    """What ``DELETE /v1/secrets?scope=`` removed: names, never values."""

    scope: str
    deleted: list[str]
    count: int
    pending: int = Field(
        description="Keychain items still to delete: the keychain failed after the index "
        "change was committed; the daemon's next open of the vault deletes them."
    )


@router.delete("", response_model=ScopeDeleted)
def delete_scope(
    state: State,
    actor: Actor,
    scope: Annotated[
        str, Query(pattern=SCOPE, description="The scope to empty, e.g. `bot:42` (required).")
    ],
) -> ScopeDeleted:
    """Remove every secret of ``scope`` (a deleted bot's ``bot:<id>``) in one index
    transaction; keychain items are journaled with it and deleted after the commit, so a
    crash halfway is finished by the next open."""
    result = state.home.vault.delete_scope(scope, actor=actor)
    if result.deleted:
        _record(
            state,
            actor,
            "secrets.scope_deleted",
            scope=scope,
            name="",
            details={"count": len(result.deleted)},
        )
    return ScopeDeleted(**result.to_dict())


@router.get("/{name}", response_model=SecretInfo)
def secret_info(state: State, name: NamePath, scope: ScopeQuery = "global") -> SecretInfo:
    """One secret's metadata."""
    return SecretInfo.of(state.home.vault.meta(name, scope))


@router.put(
    "/{name}",
    response_model=SecretInfo,
    responses={201: {"model": SecretInfo, "description": "Created (version 1)."}},
)
def set_secret(
    state: State, name: NamePath, body: SetSecret, response: Response, actor: Actor
) -> SecretInfo:
    """Store a value (JSON body); answers the new metadata, never the value.

    A value a rule refuses is a 422 naming the rule, and nothing is stored.
    """
    meta = state.home.vault.set(
        name,
        body.value.get_secret_value(),
        scope=body.scope,
        actor=actor,
        expected_version=body.expected_version,
    )
    if meta.version == 1:
        response.status_code = 201
    _record(
        state, actor, "secret.set", scope=meta.scope, name=name, details={"version": meta.version}
    )
    return SecretInfo.of(meta)


@router.delete("/{name}", response_model=SecretInfo)
def delete_secret(
    state: State, name: NamePath, actor: Actor, scope: ScopeQuery = "global"
) -> SecretInfo:
    """Remove the secret and its value; answers the metadata it had."""
    meta = state.home.vault.delete(name, scope, actor=actor)
    _record(
        state, actor, "secret.deleted", scope=scope, name=name, details={"version": meta.version}
    )
    return SecretInfo.of(meta)


@router.post("/{name}/reveal", response_model=Revealed)
def reveal_secret(state: State, name: NamePath, body: RevealRequest, actor: Actor) -> Revealed:
    """The value itself: audited, and refused when `vault.allow_reveal` is off."""
    if not state.home.config.vault.allow_reveal:
        raise Forbidden(
            "revealing secret values through the API is disabled",
            hint="Set vault.allow_reveal = true in bastion.toml to allow it.",
        )
    vault = state.home.vault
    secret = vault.get(name, body.scope, actor=actor, reveal=True)
    meta = vault.meta(name, body.scope)
    _record(
        state,
        actor,
        "secret.revealed",
        scope=body.scope,
        name=name,
        details={"version": meta.version},
    )
    return Revealed(scope=body.scope, name=name, version=meta.version, value=secret.reveal())


class ReconcileRequest(_Request):
    # The descriptions are the CLI's option help, word for word (`bastion secrets reconcile`).
    fix: bool = Field(False, description="Adopt orphaned items and drop rows whose value is gone.")
    allow_drop_all: bool = Field(
        False,
        description="With fix, drop rows even when every value looks gone (usually a wrong "
        "keychain). Without it such a fix is refused: 409 `reconcile_refused`, nothing changed.",
    )


class ReconcileReport(_Model):
    """Names only (``scope/name``), never values."""

    backend: str
    orphans_checked: bool
    orphans: list[str]
    missing: list[str]
    fixed: bool
    changes: list[dict[str, str]]
    #: Scopes whose secret count was rewritten from the rows (``fix``): ``[kept, counted]``.
    recounted: dict[str, list[int]] = Field(default_factory=dict)


@router.post("/reconcile", response_model=ReconcileReport)
def reconcile_secrets(state: State, body: ReconcileRequest, actor: Actor) -> ReconcileReport:
    """Compare the index with the backend (seed 000's stale-key cleanup): keychain items the
    index lacks, and index rows whose value vanished; ``fix`` adopts or drops them."""
    report = state.home.vault.reconcile(
        fix=body.fix, actor=actor, allow_drop_all=body.allow_drop_all
    )
    if report["changes"]:
        _record(
            state,
            actor,
            "secrets.reconciled",
            scope="",
            name="",
            details={"changes": report["changes"]},
        )
    return ReconcileReport(**report)


def _record(
    state: DaemonState,
    actor: str,
    action: str,
    *,
    scope: str,
    name: str,
    details: dict[str, object],
) -> None:
    """The activity feed's "who did what" row (names and versions only, never a value)."""
    subject = f"{scope}/{name}" if name else scope
    state.home.activity.record(actor, action, subject, details)
