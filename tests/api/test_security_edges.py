"""The front door's rules one by one, calling the ASGI middleware directly (no server, no app):
repeated headers, the preflight's answer, public routes, the bare-bearer exception, body
limits and the body the route then reads, the headers each refusal carries, the policy's own
construction. The attack set through the real app is tests/api/test_security.py.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from bastion.api.security import Counters, SecurityMiddleware, SecurityPolicy

PORT = 41001
TOKEN = secrets.token_urlsafe(32)
HOST = (b"host", f"127.0.0.1:{PORT}".encode())
AUTH = (b"authorization", f"Bearer {TOKEN}".encode())
APP_ORIGIN = "tauri://localhost"
LIMIT = 64


def _policy(**kwargs: Any) -> SecurityPolicy:
    options: dict[str, Any] = {
        "token": TOKEN,
        "extra_origins": (APP_ORIGIN,),
        "max_body_bytes": LIMIT,
        "public_prefixes": ("/static/",),
    }
    options.update(kwargs)
    return SecurityPolicy.for_port(PORT, **options)


@dataclass
class Outcome:
    """What one request did: the messages sent back, whether the inner app ran, the body it
    read, and what it got from a second ``receive``."""

    sent: list[dict[str, Any]]
    reached: bool
    body_seen: bytes | None = None
    body_message: dict[str, Any] | None = None
    after_body: dict[str, Any] | None = None
    counters: Counters = field(default_factory=Counters)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    @property
    def header_list(self) -> list[tuple[bytes, bytes]]:
        return list(self.sent[0]["headers"])

    @property
    def error(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.sent[1]["body"])
        return decoded


def _request(
    method: str,
    headers: list[tuple[bytes, bytes]],
    *,
    path: str = "/v1/status",
    messages: list[dict[str, Any]] | None = None,
    policy: SecurityPolicy | None = None,
    authorize: Callable[[Any], bool] | None = None,
    app_headers: list[tuple[bytes, bytes]] | None = None,
) -> Outcome:
    """One request through the middleware; ``messages`` are what ``receive`` returns in turn
    (a disconnect after the last)."""
    outcome = Outcome(sent=[], reached=False)
    queue = list(messages or [{"type": "http.request", "body": b"", "more_body": False}])

    async def receive() -> dict[str, Any]:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        outcome.sent.append(message)

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        outcome.reached = True
        if method in {"POST", "PUT", "PATCH", "DELETE"}:
            outcome.body_message = await receive()
            outcome.body_seen = outcome.body_message["body"]
            outcome.after_body = await receive()
        start: dict[str, Any] = {"type": "http.response.start", "status": 200}
        if app_headers is not None:  # ASGI: a response start may leave its headers out
            start["headers"] = list(app_headers)
        await send(start)
        await send({"type": "http.response.body", "body": b"{}"})

    mw = SecurityMiddleware(
        inner, policy=policy or _policy(), counters=outcome.counters, authorize=authorize
    )
    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    asyncio.run(mw(scope, receive, send))
    return outcome


def _json_post(body: bytes, *extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [
        HOST,
        AUTH,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]


# --- the policy ----------------------------------------------------------------------------------


def test_a_token_under_32_characters_is_refused() -> None:
    with pytest.raises(ValueError) as caught:
        SecurityPolicy.for_port(PORT, token="x" * 31)
    assert str(caught.value) == "the API token must be at least 32 characters"
    assert SecurityPolicy.for_port(PORT, token="x" * 32).token == "x" * 32


def test_the_policy_allows_each_loopback_name_and_extra_host_with_its_port_only() -> None:
    policy = _policy(extra_hosts=("10.0.0.7", "fd00::7", "Box.Local"))
    assert policy.allowed_hosts == {
        f"{name}:{PORT}"
        for name in ("127.0.0.1", "localhost", "[::1]", "10.0.0.7", "[fd00::7]", "box.local")
    }
    assert policy.allowed_origins == {f"http://{h}" for h in policy.allowed_hosts} | {APP_ORIGIN}
    assert policy.max_body_bytes == LIMIT
    assert policy.public_paths == {"/health"}
    assert policy.public_prefixes == ("/static/",)
    # An extra origin is compared without its trailing slash.
    assert "https://app.example" in _policy(extra_origins=("https://app.example/",)).allowed_origins
    # A non-loopback host the daemon serves on (a container address) is let in, by its port.
    ok = _request("GET", [(b"host", f"[FD00::7]:{PORT}".encode()), AUTH], policy=policy)
    assert ok.reached


def test_the_policys_repr_never_shows_the_token() -> None:
    shown = repr(_policy())
    assert TOKEN not in shown
    assert shown.startswith("SecurityPolicy(hosts=[")
    assert f"'127.0.0.1:{PORT}'" in shown


# --- headers sent twice ----------------------------------------------------------------------------


def test_a_header_sent_twice_is_refused_even_when_both_copies_are_good() -> None:
    """Two copies of a header the checks read is request smuggling: one hop reads the first,
    another the second. Each is refused with its own check's code."""
    assert _request("GET", [HOST, HOST, AUTH]).status == 403
    origin = (b"origin", f"http://127.0.0.1:{PORT}".encode())
    twice_origin = _request("GET", [HOST, origin, origin, AUTH])
    assert (twice_origin.status, twice_origin.error["code"]) == (403, "forbidden")
    twice_auth = _request("GET", [HOST, AUTH, AUTH])
    assert (twice_auth.status, twice_auth.reached) == (401, False)
    body = b"{}"
    twice_length = _request(
        "POST",
        [*_json_post(body), (b"content-length", b"2")],
        messages=[{"type": "http.request", "body": body}],
    )
    assert (twice_length.status, twice_length.error["code"]) == (413, "payload_too_large")
    counters = [o.counters.rejected for o in (twice_origin, twice_auth, twice_length)]
    assert counters == [
        {"forbidden_origin": 1},
        {"unauthorized": 1},
        {"payload_too_large": 1},
    ]


def test_only_the_watched_headers_count_as_repeated() -> None:
    """Other headers may come twice (Accept, Cookie): the request passes."""
    outcome = _request("GET", [HOST, AUTH, (b"accept", b"a"), (b"accept", b"b")])
    assert outcome.reached
    assert outcome.counters.handled == 1


# --- origins and the preflight ------------------------------------------------------------------


def test_an_allowed_origins_preflight_is_answered_here_and_reaches_no_route() -> None:
    outcome = _request(
        "OPTIONS",
        [HOST, (b"origin", APP_ORIGIN.encode()), (b"access-control-request-method", b"POST")],
    )
    assert not outcome.reached
    assert outcome.status == 204
    assert outcome.header_list == [
        (b"access-control-allow-origin", APP_ORIGIN.encode()),
        (b"vary", b"Origin"),
        (b"access-control-allow-methods", b"GET, POST, PUT, PATCH, DELETE"),
        (b"access-control-allow-headers", b"authorization, content-type, last-event-id"),
        (b"access-control-max-age", b"600"),
        (b"content-length", b"0"),
    ]
    assert outcome.sent[1] == {"type": "http.response.body", "body": b""}
    assert outcome.counters.handled == 0


def test_an_options_request_that_is_no_preflight_needs_the_token() -> None:
    """Without Access-Control-Request-Method an OPTIONS is an ordinary request: token first."""
    origin = (b"origin", APP_ORIGIN.encode())
    assert _request("OPTIONS", [HOST, origin]).status == 401
    assert _request("OPTIONS", [HOST, origin, AUTH]).reached
    # A preflight header without an Origin is no preflight either.
    no_origin = _request("OPTIONS", [HOST, (b"access-control-request-method", b"POST")])
    assert no_origin.status == 401


def test_an_allowed_origin_gets_its_cors_headers_on_the_answer_and_on_a_refusal() -> None:
    """The app (a browser page) must be able to read both the route's answer and a refusal;
    it sees its own origin echoed, never ``*``. The route's own headers come first."""
    origin = (b"origin", APP_ORIGIN.encode())
    cors = [(b"access-control-allow-origin", APP_ORIGIN.encode()), (b"vary", b"Origin")]
    ok = _request("GET", [HOST, origin, AUTH], app_headers=[(b"x-route", b"1")])
    assert ok.reached
    assert ok.header_list == [(b"x-route", b"1"), *cors]
    assert ok.sent[1]["body"] == b"{}"
    refused = _request("GET", [HOST, origin])
    assert refused.status == 401
    assert refused.header_list[-3:] == [*cors, (b"www-authenticate", b'Bearer realm="bastion"')]
    # Without an Origin nothing CORS is added.
    plain = _request("GET", [HOST, AUTH], app_headers=[(b"x-route", b"1")])
    assert plain.header_list == [(b"x-route", b"1")]


def test_an_origin_is_compared_without_a_trailing_slash() -> None:
    origin = (b"origin", f"{APP_ORIGIN}/".encode())
    outcome = _request("GET", [HOST, origin, AUTH])
    assert outcome.reached
    assert outcome.headers[b"access-control-allow-origin"] == f"{APP_ORIGIN}/".encode()


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status", "code", "reason", "hint"),
    [
        (
            [(b"host", b"evil.example"), AUTH],
            403,
            "forbidden_host",
            "the Host header is not this daemon's loopback address",
            "Call the daemon as http://127.0.0.1:<port> (or localhost, [::1]) with its own port.",
        ),
        (
            [HOST, (b"origin", b"https://evil.example"), AUTH],
            403,
            "forbidden_origin",
            "requests from this Origin are not allowed",
            "Add the app's origin to [api] allowed_origins in bastion.toml.",
        ),
    ],
    ids=["host", "origin"],
)
def test_each_refusal_says_what_and_how_to_fix_it_and_is_counted(
    headers: list[tuple[bytes, bytes]], status: int, code: str, reason: str, hint: str
) -> None:
    outcome = _request("GET", headers)
    assert not outcome.reached
    assert outcome.status == status
    assert outcome.error == {"code": "forbidden", "message": reason, "hint": hint}
    body = outcome.sent[1]["body"]
    assert outcome.header_list == [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    assert outcome.counters.rejected == {code: 1}
    assert outcome.counters.handled == 0


def test_a_missing_token_is_401_with_a_bearer_challenge() -> None:
    outcome = _request("GET", [HOST])
    assert outcome.status == 401
    assert outcome.error["code"] == "unauthorized"
    assert outcome.error["message"] == "missing or invalid bearer token"
    assert outcome.headers[b"www-authenticate"] == b'Bearer realm="bastion"'


# --- the token -----------------------------------------------------------------------------------


def test_the_bearer_scheme_is_case_insensitive_and_other_schemes_are_refused() -> None:
    assert _request("GET", [HOST, (b"authorization", f"BEARER {TOKEN}".encode())]).reached
    basic = _request("GET", [HOST, (b"authorization", f"Basic {TOKEN}".encode())])
    assert basic.status == 401


def test_the_session_fallback_is_asked_only_when_no_token_is_sent() -> None:
    """The dashboard's cookie session (``authorize``) lets a request without Authorization
    in; a wrong token is refused even when the session would say yes."""
    asked: list[str] = []

    def session(scope: Any) -> bool:
        asked.append(scope["path"])
        return True

    assert _request("GET", [HOST], authorize=session).reached
    assert asked == ["/v1/status"]
    wrong = _request("GET", [HOST, (b"authorization", b"Bearer nope")], authorize=session)
    assert wrong.status == 401
    assert asked == ["/v1/status"]
    assert _request("GET", [HOST], authorize=lambda _scope: False).status == 401


# --- public routes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "public"),
    [
        ("GET", "/health", True),
        ("HEAD", "/health", True),
        ("POST", "/health", False),
        ("GET", "/healthz", False),
        ("GET", "/static/app.js", True),
        ("HEAD", "/static/app.js", True),
        ("DELETE", "/static/app.js", False),
        ("GET", "/staticx", False),
    ],
)
def test_only_get_and_head_of_the_public_routes_go_without_a_token(
    method: str, path: str, public: bool
) -> None:
    outcome = _request(method, [HOST], path=path)
    assert outcome.reached == public
    if not public:
        assert outcome.status == 401
    # The Host check applies to public routes too.
    assert _request(method, [(b"host", b"evil.example")], path=path).status == 403


# --- bodies --------------------------------------------------------------------------------------


def test_the_route_reads_the_body_the_middleware_buffered_then_the_disconnect() -> None:
    body = b'{"a": 1}'
    outcome = _request(
        "POST",
        _json_post(body),
        messages=[
            {"type": "http.request", "body": body[:3], "more_body": True},
            {"type": "http.request", "body": body[3:], "more_body": False},
        ],
    )
    assert outcome.reached
    assert outcome.body_message == {"type": "http.request", "body": body, "more_body": False}
    # After the body, the route waits on the real receive (a disconnect, as from a server).
    assert outcome.after_body == {"type": "http.disconnect"}
    assert outcome.counters.handled == 1


def test_a_client_that_disconnects_mid_body_reaches_no_route() -> None:
    """What arrived before the disconnect is no whole JSON document: the body check refuses
    it (before json_body.py the route was given the three bytes)."""
    body = b'{"a": 1}'
    outcome = _request(
        "POST",
        _json_post(body),
        messages=[{"type": "http.request", "body": body[:3], "more_body": True}],
    )
    assert not outcome.reached
    assert outcome.status == 400


@pytest.mark.parametrize(
    ("length", "allowed"),
    [(str(LIMIT), True), (str(LIMIT + 1), False), ("abc", False), ("-", False)],
)
def test_a_declared_length_over_the_limit_or_not_a_number_is_413(
    length: str, allowed: bool
) -> None:
    body = b"{}"
    headers = [
        HOST,
        AUTH,
        (b"content-type", b"application/json"),
        (b"content-length", length.encode()),
    ]
    outcome = _request("POST", headers, messages=[{"type": "http.request", "body": body}])
    assert outcome.reached == allowed
    if not allowed:
        assert outcome.status == 413
        assert outcome.error == {
            "code": "payload_too_large",
            "message": f"request body too large: the limit is {LIMIT} bytes",
            "hint": "Send a smaller body, or raise [api] max_body_bytes in bastion.toml "
            "(BASTION_API_MAX_BODY_BYTES).",
        }


@pytest.mark.parametrize(("size", "allowed"), [(LIMIT, True), (LIMIT + 1, False)])
def test_a_chunked_body_is_capped_by_what_arrives(size: int, allowed: bool) -> None:
    """No Content-Length: the cap counts the bytes as they come, before the route runs."""
    half = size // 2
    data = b'"' + b"a" * (size - 2) + b'"'  # a JSON string of exactly `size` bytes
    headers = [
        HOST,
        AUTH,
        (b"content-type", b"application/json"),
        (b"transfer-encoding", b"Chunked"),
    ]
    outcome = _request(
        "PUT",
        headers,
        messages=[
            {"type": "http.request", "body": data[:half], "more_body": True},
            {"type": "http.request", "body": data[half:], "more_body": False},
        ],
    )
    assert outcome.reached == allowed
    if allowed:
        assert outcome.body_seen == data
    else:
        assert outcome.status == 413


def test_a_chunked_body_must_be_json_even_on_delete() -> None:
    headers = [HOST, AUTH, (b"content-type", b"text/plain"), (b"transfer-encoding", b"chunked")]
    outcome = _request("DELETE", headers, messages=[{"type": "http.request", "body": b"x"}])
    assert outcome.status == 415
    assert outcome.error == {
        "code": "unsupported_media_type",
        "message": "this route accepts only application/json bodies",
        "hint": "Send the body as JSON with `Content-Type: application/json`.",
    }


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [
        # A body-less POST with the bearer token and no Content-Type: a generated client.
        ("POST", [HOST, AUTH], 200),
        ("POST", [HOST, AUTH, (b"content-length", b"0")], 200),
        # ... but a Content-Type that is not JSON is still refused,
        ("POST", [HOST, AUTH, (b"content-type", b"text/plain")], 415),
        # and so is a body without a Content-Type,
        ("POST", [HOST, AUTH, (b"content-length", b"2")], 415),
        ("POST", [HOST, AUTH, (b"transfer-encoding", b"chunked")], 415),
        # and a Content-Length that is no number (blank: no body, so no JSON needed).
        ("POST", [HOST, AUTH, (b"content-length", b" ")], 413),
        # DELETE needs JSON only with a body.
        ("DELETE", [HOST, AUTH], 200),
        ("DELETE", [HOST, AUTH, (b"content-length", b"2")], 415),
        (
            "DELETE",
            [HOST, AUTH, (b"content-length", b"2"), (b"content-type", b"Application/JSON; x")],
            200,
        ),
    ],
    ids=[
        "post-bare",
        "post-length-0",
        "post-text",
        "post-body-no-type",
        "post-chunked-no-type",
        "post-length-blank",
        "delete-bare",
        "delete-body-no-type",
        "delete-json",
    ],
)
def test_json_is_required_for_bodies_and_mutations_except_a_bare_bearer_call(
    method: str, headers: list[tuple[bytes, bytes]], status: int
) -> None:
    outcome = _request(method, headers, messages=[{"type": "http.request", "body": b"{}"}])
    assert outcome.status == status
    assert outcome.reached == (status == 200)


def test_the_bare_call_exception_needs_a_bearer_token_not_a_session() -> None:
    """CSRF rides on credentials a browser adds by itself (the session cookie): a body-less
    POST on the session alone must still be JSON."""
    outcome = _request("POST", [HOST], authorize=lambda _scope: True)
    assert outcome.status == 415
    assert not outcome.reached


# --- other ASGI traffic --------------------------------------------------------------------------


def test_lifespan_reaches_the_app_and_websockets_are_not_served() -> None:
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    async def nothing() -> dict[str, Any]:
        return {}

    async def ignore(message: dict[str, Any]) -> None:
        del message

    mw = SecurityMiddleware(inner, policy=_policy(), counters=Counters())
    asyncio.run(mw({"type": "lifespan"}, nothing, ignore))
    asyncio.run(mw({"type": "websocket", "path": "/", "headers": [HOST, AUTH]}, nothing, ignore))
    assert seen == ["lifespan"]


def test_a_request_message_may_leave_its_body_out() -> None:
    """ASGI: ``body`` defaults to empty and ``more_body`` to false when a server leaves them
    out; the route then reads an empty body."""
    headers = [HOST, AUTH, (b"content-type", b"application/json"), (b"content-length", b"0")]
    outcome = _request("POST", headers, messages=[{"type": "http.request"}])
    assert outcome.reached
    assert outcome.body_seen == b""


def test_cors_headers_come_with_every_refusal_after_the_origin_check() -> None:
    """A page of an allowed origin can read why its request was refused (415, 413), and an
    answer whose route sent no headers at all still gets them."""
    origin = (b"origin", APP_ORIGIN.encode())
    cors = [(b"access-control-allow-origin", APP_ORIGIN.encode()), (b"vary", b"Origin")]
    not_json = _request("POST", [HOST, origin, AUTH, (b"content-type", b"text/plain")])
    assert not_json.status == 415
    assert not_json.header_list[-2:] == cors
    for length in (b"abc", str(LIMIT + 1).encode()):
        too_big = _request(
            "POST",
            [
                HOST,
                origin,
                AUTH,
                (b"content-type", b"application/json"),
                (b"content-length", length),
            ],
        )
        assert too_big.status == 413
        assert too_big.header_list[-2:] == cors
    chunks = [{"type": "http.request", "body": b"a" * (LIMIT + 1), "more_body": False}]
    chunked = _request(
        "POST",
        [
            HOST,
            origin,
            AUTH,
            (b"content-type", b"application/json"),
            (b"transfer-encoding", b"chunked"),
        ],
        messages=chunks,
    )
    assert chunked.status == 413
    assert chunked.header_list[-2:] == cors
    bare = _request("GET", [HOST, origin, AUTH], app_headers=None)
    assert bare.header_list == cors


def test_the_counters_add_up_over_requests() -> None:
    """What /v1/status shows: totals over every request, not the last one."""
    counters = Counters()
    mw = SecurityMiddleware(_ok_app, policy=_policy(), counters=counters)
    for headers in ([HOST, AUTH], [HOST, AUTH], [HOST], [HOST], [(b"host", b"evil")]):
        scope = {"type": "http", "method": "GET", "path": "/v1/status", "headers": headers}
        asyncio.run(mw(scope, _no_body, _discard))
    assert counters.handled == 2
    assert counters.rejected == {"unauthorized": 2, "forbidden_host": 1}


async def _ok_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _discard(message: dict[str, Any]) -> None:
    del message
