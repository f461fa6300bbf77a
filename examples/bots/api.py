"""A small REST facade over the store (the seed's plan 01-05 wires repositories into a REST
API). Errors come from bastion's one error table (``install_error_handlers``): ``Conflict``
-> 409, ``NotFound`` -> 404, ``ReferenceViolation`` -> 409, each as ``{code, message, hint}``.
Secret values are accepted in request bodies and never returned.

Local use only: bind it to 127.0.0.1 and put bastion's daemon security in front of it (token,
Host/Origin checks) if it is ever served; this facade shows the data-layer mapping.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from bastion.api.errors import install_error_handlers
from bastion.errors import NotFound, Unauthorized
from examples.bots.bot.types import Bot, BotChanges, BotStatus, NewBot
from examples.bots.store import BotStore

__all__ = ["create_app"]

SortKey = Literal["created_at", "updated_at", "name", "slug"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BotIn(_Model):
    slug: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    status: BotStatus = "active"
    category: str | None = None


class BotPatch(_Model):
    slug: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$"
    )
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = None
    status: BotStatus | None = None
    category: str | None = None


class SoulIn(_Model):
    content: str = Field(min_length=1)
    message: str | None = None


class RollbackIn(_Model):
    version: int = Field(ge=1)
    message: str | None = None


class SecretIn(_Model):
    value: str = Field(min_length=1, max_length=65536)


def _bot(bot: Bot) -> dict[str, Any]:
    return dataclasses.asdict(bot)


def create_app(store: BotStore) -> FastAPI:
    """Every route needs ``Authorization: Bearer <api key>`` (a key from ``api_keys``)."""

    def authenticate(authorization: str | None = Header(default=None)) -> None:
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            raise Unauthorized("missing API key", hint="Send `Authorization: Bearer <api key>`.")
        try:
            store.api_keys.verify(presented)
        except NotFound as err:
            # Looked up by SHA-256, never compared as text; the error never echoes the key.
            raise Unauthorized("unknown or revoked API key") from err

    app = FastAPI(
        title="boternity (bastion example)", version="1", dependencies=[Depends(authenticate)]
    )
    install_error_handlers(app)

    def need_bot(bot_id: str) -> Bot:
        bot = store.bots.get(bot_id)
        if bot is None:
            raise NotFound(f"no bot with id {bot_id!r}", entity="bot", key=bot_id)
        return bot

    @app.post("/bots", status_code=201)
    def create_bot(body: BotIn) -> dict[str, Any]:
        return _bot(store.bots.create(NewBot(**body.model_dump())))

    @app.get("/bots")
    def list_bots(
        *,
        status: BotStatus | None = None,
        category: str | None = None,
        sort: SortKey = "created_at",
        order: Literal["asc", "desc"] = "desc",
        limit: int = Query(default=20, ge=1, le=200),
        offset: int = Query(default=0, ge=0),
    ) -> dict[str, Any]:
        page = store.bots.list(
            status=status, category=category, sort=sort, direction=order, limit=limit, offset=offset
        )
        return {
            "items": [_bot(b) for b in page.items],
            "total": page.total,
            "limit": page.limit,
            "offset": page.offset,
        }

    @app.get("/bots/{bot_id}")
    def get_bot(bot_id: str) -> dict[str, Any]:
        return _bot(need_bot(bot_id))

    @app.patch("/bots/{bot_id}")
    def update_bot(bot_id: str, body: BotPatch) -> dict[str, Any]:
        return _bot(store.bots.update(bot_id, BotChanges(**body.model_dump())))

    @app.delete("/bots/{bot_id}", status_code=204)
    def delete_bot(bot_id: str) -> Response:
        store.delete_bot(bot_id)
        return Response(status_code=204)

    @app.put("/bots/{bot_id}/soul")
    def save_soul(bot_id: str, body: SoulIn) -> dict[str, Any]:
        soul = store.souls.save(bot_id, body.content, body.message)
        return {"bot_id": bot_id, "version": soul.version, "hash": soul.hash}

    @app.get("/bots/{bot_id}/soul")
    def current_soul(bot_id: str) -> dict[str, Any]:
        need_bot(bot_id)
        soul = store.souls.current(bot_id)
        if soul is None:
            raise NotFound(f"bot {bot_id!r} has no soul yet", hint="PUT /bots/{id}/soul first.")
        return dataclasses.asdict(soul)

    @app.get("/bots/{bot_id}/soul/versions")
    def soul_history(bot_id: str) -> dict[str, Any]:
        need_bot(bot_id)
        return {
            "items": [
                {
                    "version": s.version,
                    "hash": s.hash,
                    "intact": s.intact,
                    "message": s.message,
                    "created_at": s.created_at,
                    "size": len(s.content),
                }
                for s in store.souls.history(bot_id)
            ]
        }

    @app.post("/bots/{bot_id}/soul/rollback")
    def rollback_soul(bot_id: str, body: RollbackIn) -> dict[str, Any]:
        need_bot(bot_id)
        soul = store.souls.rollback(bot_id, body.version, body.message)
        return {"bot_id": bot_id, "version": soul.version, "hash": soul.hash}

    @app.get("/bots/{bot_id}/soul/diff")
    def diff_soul(
        bot_id: str,
        old: int = Query(alias="from", ge=1),
        new: int = Query(alias="to", ge=1),
    ) -> dict[str, Any]:
        need_bot(bot_id)
        diff = store.souls.diff(bot_id, old, new)
        return {**dataclasses.asdict(diff), "identical": diff.identical}

    @app.get("/bots/{bot_id}/secrets")
    def list_secrets(bot_id: str) -> dict[str, Any]:
        # Names and metadata only: never a value.
        return {"items": [m.to_dict() for m in store.secrets.names(bot_id=bot_id)]}

    @app.put("/bots/{bot_id}/secrets/{name}")
    def set_secret(bot_id: str, name: str, body: SecretIn) -> dict[str, Any]:
        return store.secrets.set(name, body.value, bot_id=bot_id).to_dict()

    @app.delete("/bots/{bot_id}/secrets/{name}", status_code=204)
    def delete_secret(bot_id: str, name: str) -> Response:
        store.secrets.delete(name, bot_id=bot_id)
        return Response(status_code=204)

    return app
