"""``create_app(home, port=…)``: the FastAPI app over an open :class:`~bastion.app.Home`.

The app is wrapped, outermost first, in :class:`~bastion.api.security.SecurityMiddleware`
(Host, Origin, token, media type, body cap) and :class:`~bastion.api.errors.ErrorBoundary`
(unhandled -> 500 "internal error"), so a rejected request reaches no route and no error
escapes without going through the one error table in ``bastion.api.errors``.

The dashboard (another package, ``bastion.api.dashboard``) is mounted when present: it
exposes ``mount(app, token=…) -> hooks``, where ``hooks`` may carry ``public_prefixes`` and
``public_paths`` (GET paths served without a token: the page and its static files) and
``authorize(scope) -> bool`` (asked for a request that carries no bearer token, e.g. to accept
the dashboard's session cookie + CSRF header). Host and Origin checks apply to all of them.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI
from starlette.types import Scope

from bastion.__about__ import __api_version__, __version__
from bastion.api import fastapi_v1
from bastion.api.errors import ErrorBoundary, install_error_handlers
from bastion.api.lazy_router import LazyRouter
from bastion.api.models import ErrorBody
from bastion.api.security import SecurityMiddleware, SecurityPolicy
from bastion.api.state import DaemonState
from bastion.app import Home
from bastion.scheduler import Scheduler

__all__ = ["LAZY_ROUTERS", "ROUTERS", "create_app", "declare_routes", "load_routers"]

# Before any route is declared (every route module is under bastion.api, whose __init__
# imports this module first): FastAPI's check for pydantic.v1 models without importing it.
fastapi_v1.install()

log = logging.getLogger("bastion.api")

#: The routers ``create_app`` includes: "module" under ``bastion.api.routes``.
ROUTERS = ("system", "settings", "secrets", "logs", "services")

#: The routers whose module is imported on the first request under their paths (``LazyRouter``,
#: bastion/api/lazy_router.py), with those paths; the others' modules are imported with the
#: app (``/health`` and ``/v1/status``, and the settings' hot reads, are what an app asks
#: first). Every route a module declares must be under one of its paths (a test checks).
LAZY_ROUTERS: dict[str, tuple[str, ...]] = {
    "secrets": ("/v1/secrets",),
    "logs": ("/v1/logs", "/v1/events", "/v1/activity"),
    "services": ("/v1/services",),
}

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


_DESCRIPTION = """\
Loopback API of a bastion home: secrets, settings, logs, services, store.

Every route but `/health` needs `Authorization: Bearer <token>` (the token is in
`<home>/run/token`, or the vault with `api.token_store = "vault"`). Request bodies are JSON
(`Content-Type: application/json`; anything else is a 415, a defence against cross-site
form posts). A `POST` without a body may leave `Content-Type` out when it carries the
bearer token. Booleans are JSON `true`/`false` only. Errors are `{code, message, hint}`
(docs/errors.md)."""


def declare_routes(*, dashboard: bool = True, metrics: bool = True) -> None:
    """Import the route modules (and the dashboard's) that are not loaded on first use
    (``LAZY_ROUTERS``): their routes are declared and their
    models created as they are imported -- most of ``create_app``'s work, none of which needs
    the home (FastAPI's analysis of each route waits for its router's first request:
    bastion/api/deferred_route.py). ``bastion serve`` calls this before it waits for the
    open-time check of ``bastion.db``, so this work runs while SQLite checks the file on the
    other core, instead of after (issue 22 §7). ``create_app`` then finds the modules
    imported. A dashboard that cannot be imported is left to ``create_app`` to report."""
    for name in ROUTERS:
        if name not in LAZY_ROUTERS:
            importlib.import_module(f"bastion.api.routes.{name}")
    if metrics:  # GET /metrics and the dashboard's series of its figures (metrics.install)
        importlib.import_module("bastion.api.metrics")
        importlib.import_module("bastion.api.metrics_series")
    if dashboard and importlib.util.find_spec("bastion.api.dashboard") is not None:
        # One that cannot be imported: create_app logs why and serves the API without it.
        with contextlib.suppress(ImportError):
            importlib.import_module("bastion.api.dashboard")


def create_app(
    home: Home,
    *,
    port: int,
    token: str | None = None,
    token_file: Path | None = None,
    scheduler: Scheduler | None = None,
    state: DaemonState | None = None,
    extra_hosts: tuple[str, ...] = (),
    dashboard: bool = True,
    supervise: bool | Literal["after-listening"] = False,
) -> FastAPI:
    """Build the API for ``home`` served on ``port`` (the Host check needs the real port).

    ``dashboard=False`` serves the API alone (the dashboard is optional; its own tests cover it).
    ``supervise=True`` runs the supervisor in the app's lifespan; ``"after-listening"`` (what
    ``bastion serve`` passes) starts it once ``state.listening`` is set, after the server's
    handshake (bastion.api.supervision); without either the service-control routes answer 503.
    """
    cfg = home.config
    if token is None:
        from bastion.api.server import load_token

        token, _ = load_token(home, token_file)
    state = state or DaemonState(home=home, port=port, scheduler=scheduler)
    lifespan = None
    if supervise:
        from bastion.api.supervision import supervisor_lifespan

        lifespan = supervisor_lifespan(state, after_listening=supervise == "after-listening")
    app = FastAPI(
        lifespan=lifespan,
        title="bastion",
        # The OpenAPI document's version is the API's (what clients are generated against).
        version=__api_version__,
        description=f"{_DESCRIPTION}\n\n(bastion {__version__})",
        # Interactive docs pull JavaScript from a CDN: not in a hardened local daemon.
        docs_url=None,
        # No OpenTelemetry from a local secrets daemon (it also costs a provider lookup per
        # request on the hot path; bench/api.py).
        telemetry={"tracing": False, "metrics": False, "logs": False},
        redoc_url=None,
        responses=_ERROR_RESPONSES,
    )
    app.state.daemon = state
    install_error_handlers(app)
    for name in ROUTERS:
        module_name = f"bastion.api.routes.{name}"
        if name in LAZY_ROUTERS:
            app.include_router(LazyRouter(module_name, LAZY_ROUTERS[name]))
        else:
            app.include_router(importlib.import_module(module_name).router)
    # Hot reads as plain Starlette routes, matched first (see routes/settings.fast_routes).
    from bastion.api.routes.settings import fast_routes

    app.router.routes[:0] = fast_routes()

    public_prefixes: tuple[str, ...] = ()
    public_paths = {"/health"}
    authorize: Callable[[Scope], bool] | None = None
    mount = _dashboard_mount() if dashboard else None
    if mount is not None:
        hooks = mount(app, token=token)
        public_prefixes = tuple(getattr(hooks, "public_prefixes", ()))
        public_paths |= set(getattr(hooks, "public_paths", ()))
        authorize = getattr(hooks, "authorize", None)

    policy = SecurityPolicy.for_port(
        port,
        token=token,
        extra_origins=cfg.api.allowed_origins,
        max_body_bytes=cfg.api.max_body_bytes,
        public_prefixes=public_prefixes,
        extra_hosts=extra_hosts,
    )
    policy = _with_public_paths(policy, frozenset(public_paths))
    _document_security(app, policy.public_paths)
    done = None
    if cfg.api.metrics:  # GET /metrics behind the token; the boundary counts each request
        from bastion.api.metrics import install

        done = install(app, state)
    # add_middleware wraps: the last added is the outermost. Security must be outermost.
    app.add_middleware(ErrorBoundary, done=done)
    app.add_middleware(
        SecurityMiddleware, policy=policy, counters=state.counters, authorize=authorize
    )
    return app


def load_routers(app: FastAPI) -> None:
    """Import every lazily loaded router of ``app`` now (``LAZY_ROUTERS``): for what reads
    the whole route table (the OpenAPI document; a test walking ``app.routes``)."""
    for route in app.router.routes:
        router = getattr(route, "original_router", None)
        if isinstance(router, LazyRouter):
            router.load()


def _dashboard_mount() -> Callable[..., object] | None:
    if importlib.util.find_spec("bastion.api.dashboard") is None:
        return None
    try:
        module = importlib.import_module("bastion.api.dashboard")
    except ImportError:
        # The API must come up without its optional page; the operator sees why it is missing.
        log.exception("the dashboard could not be loaded; serving the API without it")
        return None
    mount = getattr(module, "mount", None)
    return mount if callable(mount) else None


def _document_security(app: FastAPI, public_paths: frozenset[str]) -> None:
    """Declare the bearer token in the OpenAPI document (a client generated from it then
    sends the token), with the public routes marked as needing none."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        load_routers(app)  # the document names every route
        schema = build()  # caches it on the app; completed here in place
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {})["bearer"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "The token in <home>/run/token.",
        }
        schema["security"] = [{"bearer": []}]
        for path, operations in schema.get("paths", {}).items():
            if path in public_paths:
                for method, operation in operations.items():
                    if method in {"get", "head"}:
                        operation["security"] = []
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _with_public_paths(policy: SecurityPolicy, paths: frozenset[str]) -> SecurityPolicy:
    import dataclasses

    return dataclasses.replace(policy, public_paths=paths)
