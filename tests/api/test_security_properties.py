"""Property tests of the front door, calling the ASGI middleware directly.

Whatever Host, Origin, token or media type a client sends, a request reaches the inner app
only when each one is exactly an allowed value; otherwise the answer is the error body with
the right status. (The inner app here is a plain ASGI callable that records being reached.)
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.api.security import Counters, SecurityMiddleware, SecurityPolicy
from tests.helpers import examples

PORT = 41000
TOKEN = secrets.token_urlsafe(32)
POLICY = SecurityPolicy.for_port(PORT, token=TOKEN, extra_origins=("tauri://localhost",))
GOOD_HOSTS = sorted(POLICY.allowed_hosts)
GOOD_ORIGINS = sorted(POLICY.allowed_origins)


def _call(
    method: str, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> tuple[int, dict[str, Any] | None, bool]:
    reached: list[bool] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        reached.append(True)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    mw = SecurityMiddleware(inner, policy=POLICY, counters=Counters())
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/v1/status", "headers": headers}
    asyncio.run(mw(scope, receive, send))
    status = sent[0]["status"]
    payload = json.loads(sent[1]["body"]) if not reached else None
    return status, payload, bool(reached)


def _auth() -> tuple[bytes, bytes]:
    return (b"authorization", f"Bearer {TOKEN}".encode())


header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60)


@settings(max_examples=examples(300), deadline=None)
@given(host=st.one_of(header_text, st.sampled_from(GOOD_HOSTS)))
def test_only_an_allowed_host_passes(host: str) -> None:
    status, body, reached = _call("GET", [(b"host", host.encode("latin-1")), _auth()])
    if host.lower() in POLICY.allowed_hosts:
        assert reached
    else:
        assert not reached
        assert status == 403
        assert body is not None
        assert body["code"] == "forbidden"


@settings(max_examples=examples(300), deadline=None)
@given(origin=st.one_of(header_text, st.sampled_from(GOOD_ORIGINS)))
def test_only_an_allowed_origin_passes_and_is_echoed(origin: str) -> None:
    headers = [(b"host", GOOD_HOSTS[0].encode()), (b"origin", origin.encode("latin-1")), _auth()]
    status, _body, reached = _call("GET", headers)
    assert reached == (origin.rstrip("/") in POLICY.allowed_origins)
    if not reached:
        assert status == 403


@settings(max_examples=examples(300), deadline=None)
@given(
    token=st.one_of(
        header_text,
        st.sampled_from([TOKEN, TOKEN + " ", TOKEN[:-1], TOKEN + "\xa0", TOKEN.upper()]),
    )
)
def test_only_the_exact_token_passes(token: str) -> None:
    headers = [
        (b"host", GOOD_HOSTS[0].encode()),
        (b"authorization", f"Bearer {token}".encode("latin-1")),
    ]
    status, _body, reached = _call("GET", headers)
    # Surrounding ASCII whitespace is tolerated (HTTP's own), nothing else.
    assert reached == (token.encode("latin-1").strip() == TOKEN.encode())
    if not reached:
        assert status == 401


@settings(max_examples=examples(200), deadline=None)
@given(
    method=st.sampled_from(["POST", "PUT", "PATCH"]),
    ctype=st.one_of(
        header_text,
        st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain"]),
    ),
)
def test_mutations_pass_only_as_json(method: str, ctype: str) -> None:
    headers = [
        (b"host", GOOD_HOSTS[0].encode()),
        _auth(),
        (b"content-type", ctype.encode("latin-1")),
        (b"content-length", b"2"),
    ]
    status, _body, reached = _call(method, headers, b"{}")
    is_json = ctype.split(";", maxsplit=1)[0].strip().lower() == "application/json"
    assert reached == is_json
    if not reached:
        assert status == 415
