"""The web dashboard the daemon serves at ``/``: a static bundle plus its sign-in flow.

- ``static/``: ``index.html``, ``app.css``, ``app.js`` shipped inside the package (no build
  step, no CDN, nothing fetched at run time). The page reads and changes everything through
  the daemon's token-protected ``/v1`` routes; it holds no data of its own.
- :mod:`.sessions`: one-time login codes and the cookie sessions they become; the security
  middleware asks :meth:`Sessions.authorize` when a request carries no bearer token.
- :mod:`.routes`: ``/``, ``/login``, ``/logout``, ``/dashboard/session`` and the assets.
- :mod:`.data`: the few ``/v1/dashboard/*`` routes the page needs that the daemon's API does
  not have (backups list and "back up now", a check whose result is kept as an event).

``mount(app, token=…)`` is what ``bastion.api.app.create_app`` calls; ``bastion serve``
prints ``Dashboard.login_url()`` once listening and ``bastion dashboard`` asks the running
daemon for a fresh link (``POST /v1/dashboard/login``). :func:`login_url` mints one from the
token directly (tests, and apps holding the token).
"""

from __future__ import annotations

from bastion.api.dashboard.routes import STATIC_PREFIX, Dashboard, mount
from bastion.api.dashboard.sessions import LoginCodes, Sessions, mint_login_code

__all__ = [
    "STATIC_PREFIX",
    "Dashboard",
    "LoginCodes",
    "Sessions",
    "login_url",
    "mint_login_code",
    "mount",
]


def login_url(port: int, token: str, *, host: str = "127.0.0.1") -> str:
    """A one-time sign-in link for the daemon on ``port`` whose API token is ``token``."""
    return f"http://{host}:{port}/login?t={mint_login_code(token)}"
