"""``create_app(home, port=…)``: the FastAPI app over an open :class:`~bastion.app.Home`.

The app is wrapped, outermost first, in :class:`~bastion.api.security.SecurityMiddleware`
(Host, Origin, token, media type, body cap) and :class:`~bastion.api.errors.ErrorBoundary`
(unhandled -> 500 "internal error"), so a rejected request reaches no route and no error
escapes without going through the one error table in ``bastion.api.errors``.

The dashboard (another package, ``bastion.api.dashboard``) is mounted when present: it must
expose ``mount(app) -> tuple[str, ...]`` returning the GET path prefixes it serves without a
token (static files only; its data comes from the token-protected ``/v1`` routes).
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from fastapi import FastAPI

from bastion.__about__ import __version__
from bastion.api.errors import ErrorBoundary, install_error_handlers
from bastion.api.models import ErrorBody
from bastion.api.security import SecurityMiddleware, SecurityPolicy
from bastion.api.state import DaemonState
from bastion.app import Home
from bastion.runfiles import TOKEN_FILE, read_token
from bastion.scheduler import Scheduler

__all__ = ["ROUTERS", "create_app"]

#: The routers ``create_app`` includes: "module" under ``bastion.api.routes``.
ROUTERS = ("system",)

_ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody, "description": what}
    for status, what in {
        400: "Bad request",
        401: "Missing or invalid bearer token",
        403: "Host or Origin not allowed",
        404: "Not found",
        409: "Conflict",
        413: "Body too large",
        415: "Body is not JSON",
        422: "Invalid request",
        500: "Internal error",
        503: "A backend (store, keychain) is unavailable",
    }.items()
}


def create_app(
    home: Home,
    *,
    port: int,
    token: str | None = None,
    token_file: Path | None = None,
    scheduler: Scheduler | None = None,
    state: DaemonState | None = None,
    extra_hosts: tuple[str, ...] = (),
) -> FastAPI:
    """Build the API for ``home`` served on ``port`` (the Host check needs the real port)."""
    cfg = home.config
    if token is None:
        token = read_token(token_file or cfg.run_dir / TOKEN_FILE)
    app = FastAPI(
        title="bastion",
        version=__version__,
        description="Loopback API of a bastion home: secrets, settings, logs, services, store.",
        # Interactive docs pull JavaScript from a CDN: not in a hardened local daemon.
        docs_url=None,
        redoc_url=None,
        responses=_ERROR_RESPONSES,
    )
    state = state or DaemonState(home=home, port=port, scheduler=scheduler)
    app.state.daemon = state
    install_error_handlers(app)
    for name in ROUTERS:
        module = importlib.import_module(f"bastion.api.routes.{name}")
        app.include_router(module.router)

    public_prefixes: tuple[str, ...] = ()
    public_paths = {"/health"}
    if importlib.util.find_spec("bastion.api.dashboard") is not None:
        dashboard = importlib.import_module("bastion.api.dashboard")
        public_prefixes = tuple(dashboard.mount(app))
        public_paths.add("/")

    policy = SecurityPolicy.for_port(
        port,
        token=token,
        extra_origins=cfg.api.allowed_origins,
        max_body_bytes=cfg.api.max_body_bytes,
        public_prefixes=public_prefixes,
        extra_hosts=extra_hosts,
    )
    policy = _with_public_paths(policy, frozenset(public_paths))
    # add_middleware wraps: the last added is the outermost. Security must be outermost.
    app.add_middleware(ErrorBoundary)
    app.add_middleware(SecurityMiddleware, policy=policy, counters=state.counters)
    return app


def _with_public_paths(policy: SecurityPolicy, paths: frozenset[str]) -> SecurityPolicy:
    import dataclasses

    return dataclasses.replace(policy, public_paths=paths)
