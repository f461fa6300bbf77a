"""Dashboard sign-in: one-time login codes and the cookie sessions they are exchanged for.

The browser never sees the API token. ``bastion serve`` and ``bastion dashboard`` print a link
``http://127.0.0.1:PORT/login?t=CODE``; the code is

    base64url(nonce[16] || expires[8, big-endian unix seconds]) "." base64url(mac[:24])
    mac = HMAC-SHA256(HMAC-SHA256(token, "bastion dashboard login"), nonce || expires)

so anyone who can read ``run/token`` (the CLI, the daemon itself) can mint one without a round
trip, and nobody else can. The daemon accepts a code once (its nonce is remembered until it
expires) and only within ``LOGIN_CODE_TTL_S``; a leaked browser history entry is worthless.

A code is exchanged for a session: a random id in an ``HttpOnly; SameSite=Strict`` cookie
named after the port (cookies are not port-scoped, so two daemons on one host keep theirs
apart), plus a CSRF token the page reads from ``/dashboard/session`` and sends back in the
``X-Bastion-CSRF`` header. :meth:`Sessions.authorize` is what the API's security middleware
asks when a request has no bearer token: a valid cookie, bound to the Host it was issued on,
and for anything but GET/HEAD also the CSRF header and the daemon's own ``Origin``.

State is in memory, per app instance: a daemon restart signs everybody out, which is the
right default for a loopback admin page.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import secrets
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = [
    "CSRF_HEADER",
    "LOGIN_CODE_TTL_S",
    "SESSION_TTL_S",
    "LoginCodes",
    "Session",
    "Sessions",
    "cookie_name",
    "mint_login_code",
]

#: How long a printed login link stays valid.
LOGIN_CODE_TTL_S = 300
#: A session ends after this long without a request.
SESSION_TTL_S = 12 * 3600
#: The header the page echoes its CSRF token in (a custom header also forces a CORS preflight).
CSRF_HEADER = "x-bastion-csrf"

_LOGIN_CONTEXT = b"bastion dashboard login"
_NONCE_BYTES = 16
_MAC_BYTES = 24
_SAFE_METHODS = frozenset({"GET", "HEAD"})
#: Fetch metadata values a same-origin page sends; "cross-site" and "same-site" are refused.
_FETCH_SITES_OK = frozenset({"same-origin", "none"})


def cookie_name(port: int) -> str:
    return f"bastion_session_{port}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _login_key(token: str) -> bytes:
    # A derived key, so a login code never doubles as anything the token itself signs.
    return hmac.new(token.encode(), _LOGIN_CONTEXT, hashlib.sha256).digest()


def mint_login_code(token: str, *, now: float | None = None, ttl_s: int = LOGIN_CODE_TTL_S) -> str:
    """A fresh one-time login code for the daemon whose API token is ``token``."""
    expires = int((time.time() if now is None else now) + ttl_s)
    payload = secrets.token_bytes(_NONCE_BYTES) + struct.pack(">Q", expires)
    mac = hmac.new(_login_key(token), payload, hashlib.sha256).digest()[:_MAC_BYTES]
    return f"{_b64(payload)}.{_b64(mac)}"


class LoginCodes:
    """Checks login codes for one daemon and remembers the used ones until they expire."""

    def __init__(self, token: str, *, clock: Callable[[], float] = time.time) -> None:
        self._key = _login_key(token)
        self._clock = clock
        self._used: dict[bytes, int] = {}
        self._lock = threading.Lock()

    def redeem(self, code: str) -> bool:
        """True once for a genuine, unexpired code; False for anything else (never raises)."""
        head, sep, tail = code.partition(".")
        if not sep or len(code) > 200:
            return False
        try:
            payload, mac = _unb64(head), _unb64(tail)
        except (ValueError, TypeError):
            return False
        if len(payload) != _NONCE_BYTES + 8 or len(mac) != _MAC_BYTES:
            return False
        expected = hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
        if not hmac.compare_digest(mac, expected):
            return False
        (expires,) = struct.unpack(">Q", payload[_NONCE_BYTES:])
        now = self._clock()
        # A code from the future beyond one TTL was not minted by a clock we share.
        if not now <= expires <= now + LOGIN_CODE_TTL_S + 60:
            return False
        nonce = payload[:_NONCE_BYTES]
        with self._lock:
            self._used = {n: e for n, e in self._used.items() if e >= now}
            if nonce in self._used:
                return False
            self._used[nonce] = expires
        return True


@dataclasses.dataclass(frozen=True, slots=True)
class Session:
    id: str
    csrf: str
    host: str
    created: float


class Sessions:
    """The dashboard's signed-in browsers, and the middleware's cookie check."""

    def __init__(
        self,
        port: int,
        *,
        own_origins: Iterable[str],
        clock: Callable[[], float] = time.monotonic,
        ttl_s: float = SESSION_TTL_S,
    ) -> None:
        self.port = port
        self.cookie = cookie_name(port)
        self._cookie_bytes = self.cookie.encode()
        self.own_origins = frozenset(o.rstrip("/").lower() for o in own_origins)
        self._clock = clock
        self._ttl_s = ttl_s
        self._by_id: dict[str, tuple[Session, float]] = {}
        self._lock = threading.Lock()

    def create(self, host: str) -> Session:
        session = Session(
            id=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            host=host.lower(),
            created=self._clock(),
        )
        with self._lock:
            self._prune()
            self._by_id[session.id] = (session, self._clock())
        return session

    def get(self, session_id: str | None, host: str | None) -> Session | None:
        """The live session with this id, used from the Host it was issued on; touches it."""
        if not session_id or host is None:
            return None
        now = self._clock()
        with self._lock:
            found = self._by_id.get(session_id)
            if found is None:
                return None
            session, last = found
            if now - last > self._ttl_s:
                del self._by_id[session_id]
                return None
            if not hmac.compare_digest(session.host.encode(), host.lower().encode()):
                return None
            self._by_id[session_id] = (session, now)
            return session

    def end(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._by_id.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._by_id)

    def _prune(self) -> None:
        now = self._clock()
        self._by_id = {k: v for k, v in self._by_id.items() if now - v[1] <= self._ttl_s}

    # -- the middleware's question -------------------------------------------------------

    def authorize(self, scope: Mapping[str, Any]) -> bool:
        """May this ASGI request (which has no valid bearer token) act as the signed-in page?

        Reads: the session cookie, ``Host``, ``Origin``, ``Sec-Fetch-Site`` and the CSRF
        header. Read-only; never raises.
        """
        headers = _headers(scope)
        session = self.get(
            _cookie(headers.get(b"cookie", []), self._cookie_bytes), _one(headers, b"host")
        )
        if session is None:
            return False
        site = _one(headers, b"sec-fetch-site")
        if site is not None and site not in _FETCH_SITES_OK:
            return False
        origin = _one(headers, b"origin")
        if origin is not None and origin.rstrip("/").lower() not in self.own_origins:
            return False
        if str(scope.get("method", "GET")) in _SAFE_METHODS:
            return True
        # A mutation: the page's own Origin and the CSRF token only the page can read.
        if origin is None:
            return False
        supplied = _one(headers, CSRF_HEADER.encode())
        return supplied is not None and hmac.compare_digest(
            supplied.encode("latin-1"), session.csrf.encode()
        )

    def session_for(self, scope: Mapping[str, Any]) -> Session | None:
        headers = _headers(scope)
        return self.get(
            _cookie(headers.get(b"cookie", []), self._cookie_bytes), _one(headers, b"host")
        )


def _headers(scope: Mapping[str, Any]) -> dict[bytes, list[str]]:
    out: dict[bytes, list[str]] = {}
    for key, value in scope.get("headers") or ():
        out.setdefault(bytes(key).lower(), []).append(bytes(value).decode("latin-1"))
    return out


def _one(headers: dict[bytes, list[str]], name: bytes) -> str | None:
    values = headers.get(name)
    if not values or len(values) != 1:
        return None
    return values[0]


def _cookie(values: list[str], name: bytes) -> str | None:
    wanted = name.decode()
    found: str | None = None
    for header in values:
        for part in header.split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == wanted:
                if found is not None:  # two cookies of our name: someone is planting one
                    return None
                found = value.strip()
    return found
