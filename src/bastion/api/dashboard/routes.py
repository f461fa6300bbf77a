"""The dashboard's HTTP surface: the page, its assets, and signing in and out.

- ``GET /``: the dashboard for a signed-in browser, else a short page saying how to sign in.
- ``GET /login?t=CODE``: redeem a one-time code, set the session cookie, redirect to ``/``.
- ``POST /logout``: end the session (cookie-authenticated, so CSRF-checked by the middleware).
- ``GET /dashboard/session``: the page's CSRF token (readable only by a same-origin page).
- ``POST /v1/dashboard/login``: mint a login link (bearer token); ``bastion dashboard`` uses it.
- ``GET /dashboard/static/{name}``: the bundle's CSS, JS and icon, from a fixed table of names.
- ``GET /favicon.ico``: the icon (SVG) for browsers and tools that ask there before reading
  the page's ``<link rel="icon">``; without it every load logged a 404.

The page's data comes from the daemon's ``/v1`` routes (and :mod:`.data`), authorized by the
session cookie through the security middleware (see :mod:`.sessions`).

Every HTML response carries a Content-Security-Policy that allows scripts, styles and
connections to this origin only, so even a bug in ``app.js`` cannot make the page talk to
anything but the daemon.
"""

# No `from __future__ import annotations` here: FastAPI and pydantic would turn every string
# annotation of the routes and models back into an object at start-up (a ForwardRef compiled
# and evaluated each, ~5 ms of the daemon's start; issue 22 §7). tests/api/test_fastapi_v1.py

import dataclasses
import importlib.resources
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel
from starlette.types import Scope

from bastion.api.dashboard.sessions import (
    CSRF_HEADER,
    LOGIN_CODE_TTL_S,
    SESSION_TTL_S,
    LoginCodes,
    Sessions,
    mint_login_code,
)
from bastion.api.deferred_route import DeferredAPIRoute
from bastion.api.lazy_router import LazyRouter
from bastion.api.models import RESPONSE_CONFIG
from bastion.errors import Unauthorized

if TYPE_CHECKING:
    from bastion.api.dashboard.data import BackupJobs

__all__ = ["STATIC_PREFIX", "Dashboard", "MountHooks", "mount"]

STATIC_PREFIX = "/dashboard/static/"
#: The paths of the data routes (bastion/api/dashboard/data.py), which load with the first
#: request under them; every one of its routes is under them (tests/api/test_lazy_router.py).
DATA_PATHS = ("/v1/dashboard",)
#: The only files served from ``static/`` (name -> media type): no path ever reaches the disk.
_ASSETS = {
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "dom.js": "text/javascript; charset=utf-8",
    "logs.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
_ICON = "favicon.svg"
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "content-security-policy": _CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}

_SIGN_IN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bastion - sign in</title><link rel="stylesheet" href="/dashboard/static/app.css">
<link rel="icon" href="/dashboard/static/favicon.svg" type="image/svg+xml">
</head><body><main class="signin" id="main">
<h1>bastion</h1>
<p role="status">{message}</p>
<p>Run <code>bastion dashboard</code> on this machine and open the link it prints.
Each link works once, for {minutes} minutes.</p>
</main></body></html>
"""


@dataclasses.dataclass
class Dashboard:
    """The dashboard's state for one app instance: its bundle, login codes and sessions."""

    port: int
    token: str
    codes: LoginCodes
    sessions: Sessions
    assets: dict[str, bytes]
    _backups: Any = dataclasses.field(default=None, init=False, repr=False)

    @property
    def backups(self) -> "BackupJobs":
        """The page's "back up now" job (made with the first request for it: its module
        is the data router's, loaded on its first request)."""
        if self._backups is None:
            from bastion.api.dashboard.data import BackupJobs

            self._backups = BackupJobs()
        jobs: BackupJobs = self._backups
        return jobs

    @classmethod
    def create(cls, *, port: int, token: str, own_origins: frozenset[str]) -> "Dashboard":
        root = importlib.resources.files("bastion.api.dashboard") / "static"
        assets = {name: (root / name).read_bytes() for name in (*_ASSETS, "index.html")}
        return cls(
            port=port,
            token=token,
            codes=LoginCodes(token),
            sessions=Sessions(port, own_origins=own_origins),
            assets=assets,
        )

    def login_url(self, host: str = "127.0.0.1") -> str:
        """A fresh one-time sign-in link (what ``bastion serve`` prints once listening)."""
        return f"http://{host}:{self.port}/login?t={mint_login_code(self.token)}"


class LoginLink(BaseModel):
    model_config = RESPONSE_CONFIG
    url: str
    expires_in_s: int


class SessionInfo(BaseModel):
    model_config = RESPONSE_CONFIG
    csrf_token: str
    csrf_header: str
    port: int


def _dashboard(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


def _html(body: str | bytes, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=_SECURITY_HEADERS)


def _sign_in(message: str, status: int) -> HTMLResponse:
    page = _SIGN_IN_PAGE.format(message=message, minutes=LOGIN_CODE_TTL_S // 60)
    return _html(page, status)


router = APIRouter(route_class=DeferredAPIRoute)


@router.get("/", include_in_schema=False)
async def index(request: Request) -> Response:
    dashboard = _dashboard(request)
    if dashboard.sessions.session_for(request.scope) is None:
        return _sign_in("You are not signed in.", 401)
    return _html(dashboard.assets["index.html"])


@router.get("/login", include_in_schema=False)
async def login(request: Request, t: Annotated[str, Query(max_length=200)] = "") -> Response:
    dashboard = _dashboard(request)
    if not dashboard.codes.redeem(t):
        return _sign_in("This sign-in link is invalid, expired, or was already used.", 401)
    host = request.headers.get("host", "")
    session = dashboard.sessions.create(host)
    # 303: the browser follows with a GET to "/", and the code leaves the address bar.
    response = RedirectResponse("/", status_code=303, headers=_SECURITY_HEADERS)
    response.set_cookie(
        dashboard.sessions.cookie,
        session.id,
        max_age=SESSION_TTL_S,
        path="/",
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/logout", include_in_schema=False, status_code=204)
async def logout(request: Request) -> Response:
    dashboard = _dashboard(request)
    session = dashboard.sessions.session_for(request.scope)
    if session is not None:
        dashboard.sessions.end(session.id)
    response = Response(status_code=204, headers={"cache-control": "no-store"})
    response.delete_cookie(dashboard.sessions.cookie, path="/", httponly=True, samesite="strict")
    return response


@router.get("/dashboard/session", include_in_schema=False, response_model=SessionInfo)
async def session_info(request: Request) -> SessionInfo:
    dashboard = _dashboard(request)
    session = dashboard.sessions.session_for(request.scope)
    if session is None:  # a bearer-token client has no browser session to describe
        raise Unauthorized("no dashboard session", hint="Sign in with `bastion dashboard`.")
    return SessionInfo(csrf_token=session.csrf, csrf_header=CSRF_HEADER, port=dashboard.port)


@router.post("/v1/dashboard/login", tags=["dashboard"], response_model=LoginLink)
async def mint_login(request: Request) -> LoginLink:
    """A one-time sign-in link for the dashboard (valid once, for a few minutes)."""
    return LoginLink(url=_dashboard(request).login_url(), expires_in_s=LOGIN_CODE_TTL_S)


@router.get(STATIC_PREFIX + "{name}", include_in_schema=False)
async def asset(request: Request, name: str) -> Response:
    media = _ASSETS.get(name)
    if media is None:
        return Response(status_code=404)
    return Response(
        _dashboard(request).assets[name],
        media_type=media,
        headers={"x-content-type-options": "nosniff", "cache-control": "no-cache"},
    )


@router.get("/favicon.ico", include_in_schema=False)
async def favicon(request: Request) -> Response:
    # An SVG under the .ico name: every browser that asks here renders it (Content-Type wins).
    return Response(
        _dashboard(request).assets[_ICON],
        media_type=_ASSETS[_ICON],
        headers={"x-content-type-options": "nosniff", "cache-control": "max-age=86400"},
    )


@dataclasses.dataclass(frozen=True, slots=True)
class MountHooks:
    """What ``create_app`` needs from the dashboard to configure the security middleware."""

    public_paths: frozenset[str]
    public_prefixes: tuple[str, ...]
    authorize: Callable[[Scope], bool]


def mount(app: FastAPI, *, token: str) -> MountHooks:
    """Add the dashboard to ``app``; return the public paths and the cookie check.

    ``app.state.daemon`` must be set (its port decides the cookie name and own origin);
    ``app.state.dashboard`` holds the :class:`Dashboard` afterwards. The page and the login
    route are public (they check the session themselves and reveal nothing without one);
    everything else the page calls goes through the middleware's token-or-session check.
    """
    port = int(app.state.daemon.port)
    own = frozenset(f"http://{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]"))
    dashboard = Dashboard.create(port=port, token=token, own_origins=own)
    app.state.dashboard = dashboard
    app.include_router(router)
    # The data routes (backups, checks, size samples: the Database view's) load with their
    # first request, not with the daemon (bastion/api/lazy_router.py; issue 22 §7).
    app.include_router(LazyRouter("bastion.api.dashboard.data", DATA_PATHS))
    return MountHooks(
        public_paths=frozenset({"/", "/login", "/favicon.ico"}),
        public_prefixes=(STATIC_PREFIX,),
        authorize=dashboard.sessions.authorize,
    )
