"""The daemon's front door: pure ASGI middleware that vets every request before any route.

Checks, in order (each rejection answers ``{code, message, hint}`` and reaches no handler):

1. ``Host`` must be a loopback name with the daemon's own port (``127.0.0.1:P``,
   ``localhost:P``, ``[::1]:P``). A DNS-rebinding page reaches the right socket under a
   foreign name (``evil.example:P``) and is stopped here -> 403.
2. ``Origin``, when sent, must be the dashboard's own origin or in ``api.allowed_origins``
   (e.g. ``tauri://localhost``) -> 403. ``null`` and anything else are refused.
   An allowed cross origin gets its own origin echoed back (never ``*``) and its preflight
   answered; a foreign origin gets no CORS headers at all.
3. The bearer token (``Authorization: Bearer …``), compared in constant time, on every
   route except the public ones (``GET``/``HEAD /health``) -> 401.
4. ``POST``/``PUT``/``PATCH`` (and ``DELETE`` with a body) must be ``application/json``:
   HTML forms and ``text/plain`` "simple requests" are how CSRF gets in without a
   preflight -> 415. One exception: a request with *no body and no Content-Type at all*
   that carries a bearer token (what a client generated from the OpenAPI document sends
   for ``POST /v1/shutdown``). CSRF rides on credentials the browser adds by itself (the
   dashboard's session cookie); a bearer token is never one of them, and a page cannot set
   ``Authorization`` on a cross-site request without a preflight, which step 2 refuses.
   The cookie path keeps the rule in full.
5. The body is read here, up to ``api.max_body_bytes`` (declared or chunked) -> 413; the
   route then reads the buffered copy.
6. A JSON body must be UTF-8 JSON with each key once per object, readable by ``json``
   (nesting, digits) -> 400 ``invalid_request`` naming what is wrong and where, never the
   body's text (``json_body.py``).

Counters of requests handled and rejected (by code) are kept on :class:`Counters` and shown
in ``/v1/status``; the attack tests read them to prove a rejection reached no handler.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
from collections import Counter
from collections.abc import Callable, Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.api import json_body
from bastion.errors import (
    BastionError,
    Forbidden,
    InvalidRequest,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)

__all__ = ["Counters", "SecurityMiddleware", "SecurityPolicy"]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_JSON_REQUIRED = frozenset({"POST", "PUT", "PATCH"})
_SAFE_METHODS = frozenset({"GET", "HEAD"})
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


@dataclasses.dataclass(frozen=True, slots=True)
class SecurityPolicy:
    """What the middleware allows. Build with :meth:`for_port`."""

    token: str
    allowed_hosts: frozenset[str]
    allowed_origins: frozenset[str]
    max_body_bytes: int
    public_paths: frozenset[str] = frozenset({"/health"})
    #: GET/HEAD-only prefixes served without a token (the dashboard's static files).
    public_prefixes: tuple[str, ...] = ()

    @classmethod
    def for_port(
        cls,
        port: int,
        *,
        token: str,
        extra_origins: Iterable[str] = (),
        max_body_bytes: int = 1024 * 1024,
        public_prefixes: tuple[str, ...] = (),
        extra_hosts: Iterable[str] = (),
    ) -> SecurityPolicy:
        if len(token) < 32:
            raise ValueError("the API token must be at least 32 characters")
        names = (*_LOOPBACK_NAMES, *(f"[{h}]" if ":" in h else h for h in extra_hosts))
        hosts = frozenset(f"{name.lower()}:{port}" for name in names)
        own = {f"http://{host}" for host in hosts}
        return cls(
            token=token,
            allowed_hosts=hosts,
            allowed_origins=frozenset(own | {o.rstrip("/") for o in extra_origins}),
            max_body_bytes=max_body_bytes,
            public_prefixes=public_prefixes,
        )

    def __repr__(self) -> str:  # the token never appears in a repr, log or traceback
        return f"SecurityPolicy(hosts={sorted(self.allowed_hosts)}, origins={sorted(self.allowed_origins)})"


@dataclasses.dataclass
class Counters:
    """Request counters (mutable, owned by one app instance)."""

    handled: int = 0
    rejected: Counter[str] = dataclasses.field(default_factory=Counter)


#: Rejection -> the error class whose ``code``/``http_status`` it answers with, and the message.
_REJECTIONS: dict[str, tuple[type[BastionError], str]] = {
    "forbidden_host": (Forbidden, "the Host header is not this daemon's loopback address"),
    "forbidden_origin": (Forbidden, "requests from this Origin are not allowed"),
    "unauthorized": (Unauthorized, "missing or invalid bearer token"),
    "unsupported_media_type": (
        UnsupportedMediaType,
        "this route accepts only application/json bodies",
    ),
    "payload_too_large": (PayloadTooLarge, "request body too large"),
    "invalid_json": (InvalidRequest, "the request body is not acceptable JSON"),
}
_HINTS = {
    "forbidden_host": "Call the daemon as http://127.0.0.1:<port> (or localhost, [::1]) "
    "with its own port.",
    "forbidden_origin": "Add the app's origin to [api] allowed_origins in bastion.toml.",
    "payload_too_large": "Send a smaller body, or raise [api] max_body_bytes in bastion.toml "
    "(BASTION_API_MAX_BODY_BYTES).",
}


#: The headers the checks read; collected in one pass over the request's headers.
_WATCHED = frozenset(
    {
        b"host",
        b"origin",
        b"authorization",
        b"content-length",
        b"content-type",
        b"transfer-encoding",
        b"access-control-request-method",
    }
)


def _collect(scope: Scope) -> tuple[dict[bytes, bytes], frozenset[bytes]]:
    """The first value of each watched header, and the names that were sent twice or more."""
    found: dict[bytes, bytes] = {}
    repeated: set[bytes] = set()
    for key, value in scope["headers"]:
        if key in _WATCHED:
            if key in found:
                repeated.add(key)
            else:
                found[key] = value
    return found, frozenset(repeated)


class SecurityMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        policy: SecurityPolicy,
        counters: Counters,
        authorize: Callable[[Scope], bool] | None = None,
    ) -> None:
        self.app = app
        #: Fallback for requests with no bearer token at all (the dashboard's cookie session).
        self.authorize = authorize
        self.policy = policy
        self.counters = counters
        self._token = policy.token.encode()
        self._hosts = frozenset(h.encode("latin-1") for h in policy.allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan passes; websockets are not served at all
            if scope["type"] == "lifespan":
                await self.app(scope, receive, send)
            return
        policy = self.policy
        method: str = scope["method"]
        path: str = scope["path"]
        headers, repeated = _collect(scope)

        # 1. Host: exactly one, and ours. Two Host headers is a smuggling attempt.
        host = headers.get(b"host")
        if host is None or b"host" in repeated or host.lower() not in self._hosts:
            await self._reject(send, "forbidden_host")
            return

        # 2. Origin: absent (non-browser clients) or allowed.
        raw_origin = headers.get(b"origin")
        cors_headers: list[tuple[bytes, bytes]] = []
        if raw_origin is not None:
            origin = raw_origin.decode("latin-1")
            if b"origin" in repeated or origin.rstrip("/") not in policy.allowed_origins:
                await self._reject(send, "forbidden_origin")
                return
            cors_headers = [(b"access-control-allow-origin", raw_origin), (b"vary", b"Origin")]
            if method == "OPTIONS" and b"access-control-request-method" in headers:
                await self._preflight(send, cors_headers)
                return

        # 3. Token, except on public routes.
        public = method in _SAFE_METHODS and (
            path in policy.public_paths or any(path.startswith(p) for p in policy.public_prefixes)
        )
        if not public and not self._token_ok(scope, headers, repeated):
            await self._reject(send, "unauthorized", cors_headers)
            return

        # 4. + 5. Bodies: JSON only, capped, buffered before the route sees them.
        if method in _BODY_METHODS:
            raw_length = headers.get(b"content-length")
            declared = None if raw_length is None else raw_length.decode("latin-1").strip()
            chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
            has_body = chunked or declared not in {None, "", "0"}
            raw_ctype = headers.get(b"content-type")
            ctype = (raw_ctype or b"").split(b";")[0].strip().lower()
            # (the token itself was checked in step 3)
            bare_bearer = not has_body and raw_ctype is None and b"authorization" in headers
            needs_json = (method in _JSON_REQUIRED or has_body) and not bare_bearer
            if needs_json and ctype != b"application/json":
                await self._reject(send, "unsupported_media_type", cors_headers)
                return
            if declared is not None:
                try:
                    size = int(declared)
                except ValueError:
                    await self._reject(send, "payload_too_large", cors_headers)
                    return
                if size > policy.max_body_bytes or b"content-length" in repeated:
                    await self._reject(send, "payload_too_large", cors_headers)
                    return
            body = await self._read_body(receive)
            if body is None:
                await self._reject(send, "payload_too_large", cors_headers)
                return
            if body and ctype == b"application/json":
                found = json_body.problem(body)
                if found is not None:
                    await self._reject(send, "invalid_json", cors_headers, found)
                    return
            receive = _replay(body, receive)

        self.counters.handled += 1
        if cors_headers:
            send = _with_headers(send, cors_headers)
        await self.app(scope, receive, send)

    def _token_ok(
        self, scope: Scope, headers: dict[bytes, bytes], repeated: frozenset[bytes]
    ) -> bool:
        value = headers.get(b"authorization")
        if value is None:
            return self.authorize is not None and bool(self.authorize(scope))
        if b"authorization" in repeated:
            return False
        scheme, _, supplied = value.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        # Constant time: the comparison takes as long for a near miss as for garbage.
        return hmac.compare_digest(supplied.strip(), self._token)

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.policy.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _preflight(self, send: Send, cors_headers: list[tuple[bytes, bytes]]) -> None:
        headers = [
            *cors_headers,
            (b"access-control-allow-methods", b"GET, POST, PUT, PATCH, DELETE"),
            (b"access-control-allow-headers", b"authorization, content-type, last-event-id"),
            (b"access-control-max-age", b"600"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _reject(
        self,
        send: Send,
        code: str,
        extra: list[tuple[bytes, bytes]] | None = None,
        detail: tuple[str, str] | None = None,
    ) -> None:
        cls, message = _REJECTIONS[code]
        self.counters.rejected[code] += 1
        hint = _HINTS.get(code)
        if detail is not None:  # (message, hint) of this request's own problem
            message, hint = detail
        elif code == "payload_too_large":  # the number, so the caller knows what fits
            message = f"{message}: the limit is {self.policy.max_body_bytes} bytes"
        error = cls(message, hint=hint)
        status = error.http_status
        body = json.dumps(error.to_dict()).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *(extra or []),
        ]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="bastion"'))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later calls wait for the disconnect, as a server would

    return replay


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped
