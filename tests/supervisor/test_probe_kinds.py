"""The websocket and grpc probes against real loopback servers, each failure named."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from bastion.errors import ServiceSpecError
from bastion.store import Database
from bastion.supervisor import Supervisor
from bastion.supervisor.health import ProbeResult, _grpc, _websocket
from bastion.supervisor.spec import ProbeSpec, parse_spec
from bastion.supervisor.states import ServiceState as S
from tests.supervisor.conftest import kid, run

pytestmark = pytest.mark.posix


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ws(url: str, **extra: Any) -> ProbeSpec:
    return ProbeSpec(kind="websocket", url=url, timeout_s=extra.pop("timeout_s", 5), **extra)


def _probe_each_path(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    paths: Iterable[str],
    **spec: Any,
) -> dict[str, ProbeResult]:
    """A websocket probe of each path of a raw TCP server running ``handler`` (one that
    breaks the protocol on purpose), by path."""

    async def scenario() -> dict[str, ProbeResult]:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return {
                path: await _websocket(ws(f"ws://127.0.0.1:{port}{path}", **spec)) for path in paths
            }
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(scenario())


def test_websocket_probe_against_a_real_server_names_each_failure() -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def handler(conn: ServerConnection) -> None:
        path = conn.request.path if conn.request else "/"
        if path == "/drop":  # the TCP connection cut without a close frame
            conn.transport.abort()
            return
        if path == "/mute":  # open, but never answers (until the prober leaves)
            await conn.wait_closed()
            return
        async for message in conn:
            await conn.send("pong" if message == "ping" else f"echo {message}")

    async def not_websocket(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def scenario() -> dict[str, ProbeResult]:
        async with serve(handler, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            http = await asyncio.start_server(not_websocket, "127.0.0.1", 0)
            http_port = http.sockets[0].getsockname()[1]
            base = f"ws://127.0.0.1:{port}"
            results = {
                "open": await _websocket(ws(f"{base}/")),
                "answered": await _websocket(ws(f"{base}/", send="ping", expect="pong")),
                "wrong": await _websocket(ws(f"{base}/", send="hello", expect="pong")),
                "dropped": await _websocket(ws(f"{base}/drop")),
                "dropped_expecting": await _websocket(ws(f"{base}/drop", expect="pong")),
                "mute": await _websocket(ws(f"{base}/mute", expect="pong", timeout_s=0.3)),
                "http": await _websocket(ws(f"ws://127.0.0.1:{http_port}/")),
                "refused": await _websocket(ws(f"ws://127.0.0.1:{free_port()}/")),
            }
            http.close()
            await http.wait_closed()
            return results

    r = asyncio.run(scenario())
    assert r["open"] == ProbeResult(True, "websocket")
    assert r["answered"] == ProbeResult(True, "websocket open, answered, closed")
    assert not r["wrong"].ok
    assert "expected 'pong', got 'echo hello'" in r["wrong"].detail
    assert not r["dropped"].ok
    assert "did not complete the close handshake" in r["dropped"].detail
    assert not r["dropped_expecting"].ok
    assert "closed before answering" in r["dropped_expecting"].detail
    assert not r["mute"].ok
    assert "timed out after 0.3s" in r["mute"].detail
    assert not r["http"].ok
    assert "handshake refused" in r["http"].detail
    assert "404" in r["http"].detail
    assert not r["refused"].ok
    assert r["refused"].detail.startswith("websocket ws://127.0.0.1:")


def test_websocket_probe_names_the_protocol_violation_of_a_server_that_then_goes_mute() -> None:
    # A server that completes the handshake, then sends what the probe must refuse and
    # never answers the close the probe sends for it: the probe waits out its time for the
    # close, and "timed out" would hide what the server did.
    import base64
    import hashlib

    guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    frames = {
        "/huge": b"\x81\x7f" + (10_000_000).to_bytes(8, "big") + b"a" * 1000,
        "/not-utf8": b"\x81\x02\xff\xfe",
        "/bad-opcode": b"\x83\x02ab",
    }

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            path = request.split(b" ")[1].decode()
            key = next(
                line.split(b":", 1)[1].strip()
                for line in request.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1(key + guid).digest())  # RFC 6455's accept key
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            writer.write(frames[path])
            await writer.drain()
            await reader.read()  # mute until the probe leaves
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    r = _probe_each_path(handler, frames, expect="pong", timeout_s=0.5)
    assert not any(result.ok for result in r.values())
    assert "frame with 10000000 bytes exceeds limit of 65536 bytes" in r["/huge"].detail
    assert "1007 (invalid frame payload data)" in r["/not-utf8"].detail
    assert "invalid opcode" in r["/bad-opcode"].detail
    for result in r.values():
        assert "the server broke the WebSocket protocol" in result.detail
        assert "no answer to the close in 0.5s" in result.detail


def test_websocket_probe_names_a_handshake_the_server_cut_short() -> None:
    # The server reads the upgrade request, then hangs up: before answering, or half-way
    # through its answer. "did not receive a valid HTTP response" alone read the same as a
    # server speaking something else; the cause says it hung up, and where.
    answers = {"/silent": b"", "/half": b"HTTP/1.1 101 Switching Protocols\r\nUpg"}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            writer.write(answers[request.split(b" ")[1].decode()])
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    r = _probe_each_path(handler, answers)
    assert not r["/silent"].ok
    assert r["/silent"].detail.endswith(
        "handshake refused: did not receive a valid HTTP response "
        "(connection closed while reading HTTP status line)"
    )
    assert not r["/half"].ok
    assert r["/half"].detail.endswith("(connection closed while reading HTTP headers)")


def test_websocket_probe_drives_a_supervised_service_and_the_timeline(
    db: Database, tmp_path: Path
) -> None:
    """A real child serving WebSocket: started by its websocket startup probe, made unhealthy
    (and restarted) when it refuses upgrades; each change of outcome is a service.probe event."""
    port = free_port()
    port_file = tmp_path / "port"
    url = f"ws://127.0.0.1:{port}/health"
    probe = {"kind": "websocket", "url": url, "send": "ping", "expect": "pong", "timeout_s": 5}
    spec = kid(
        "wsd",
        "ws_echo",
        str(port_file),
        env={"PORT": str(port)},
        health={
            "startup": {**probe, "interval_s": 0.1, "failure_threshold": 300},
            "liveness": {**probe, "interval_s": 0.1, "failure_threshold": 2},
        },
    )

    async def scenario() -> None:
        sup = Supervisor(db, [spec])
        await sup.open()
        await sup.start("wsd")
        status = await sup.wait_state("wsd", S.RUNNING, S.UNHEALTHY, timeout=60)
        assert status.state == "running"
        assert "websocket open, answered, closed" in (status.reason or "")
        Path(str(port_file) + ".stop").write_text("")  # upgrades now answered 503
        await sup.wait_state("wsd", S.UNHEALTHY, timeout=60)
        await sup.close()

    run(scenario)
    rows = db.query(
        "SELECT data FROM events WHERE kind = 'service.probe' AND subject = 'wsd' ORDER BY id"
    )
    probes = [json.loads(r[0]) for r in rows]
    assert {(p["role"], p["kind"], p["ok"]) for p in probes} >= {
        ("startup", "websocket", True),
        ("liveness", "websocket", False),
    }
    failed = next(p for p in probes if not p["ok"] and p["role"] == "liveness")
    assert "handshake refused" in failed["detail"]
    assert "503" in failed["detail"]
    reasons = db.query(
        "SELECT json_extract(data, '$.reason') FROM events WHERE kind = 'service.transition'"
        " AND subject = 'wsd' AND json_extract(data, '$.to') = 'unhealthy'"
    )
    assert "liveness probe failed 2x: websocket" in reasons[0][0]


def test_grpc_health_probe_against_a_real_grpclib_server() -> None:
    pytest.importorskip("grpclib")
    from grpclib.health.check import ServiceStatus
    from grpclib.health.service import Health
    from grpclib.server import Server

    class Echo:  # a servable that only names itself (its health is what is probed)
        def __mapping__(self) -> dict[str, Any]:
            return {"/demo.Echo/Say": None}

    async def scenario() -> list[ProbeResult]:
        status = ServiceStatus()
        server = Server([Health({Echo(): [status]})])  # type: ignore[dict-item]
        await server.start("127.0.0.1", 0)
        port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        spec = ProbeSpec(kind="grpc", port=port, service="demo.Echo", timeout_s=5)
        status.set(True)
        serving = await _grpc(spec)
        status.set(False)
        not_serving = await _grpc(spec)
        unknown = await _grpc(ProbeSpec(kind="grpc", port=port, service="nope", timeout_s=5))
        server.close()
        await server.wait_closed()
        refused = await _grpc(ProbeSpec(kind="grpc", port=free_port(), timeout_s=5))
        return [serving, not_serving, unknown, refused]

    serving, not_serving, unknown, refused = asyncio.run(scenario())
    assert serving.ok
    assert serving.detail.endswith(": SERVING")
    assert not not_serving.ok
    assert not_serving.detail.endswith(": NOT_SERVING")
    assert not unknown.ok
    assert "NOT_FOUND" in unknown.detail
    assert not refused.ok
    assert refused.detail.startswith("grpc health 127.0.0.1:")


@pytest.mark.parametrize(
    ("health", "key", "words"),
    [
        ({"kind": "websocket", "url": "ws://example.com/ws"}, "url", "not a loopback ws://"),
        ({"kind": "websocket", "url": "ws://127.0.0.1.evil.test/"}, "url", "not a loopback"),
        ({"kind": "websocket", "url": "http://127.0.0.1:1/"}, "url", "not a loopback ws://"),
        ({"kind": "websocket", "url": "ws://127.0.0.1:x/"}, "url", "not a loopback"),
        ({"kind": "http", "url": "http://127.0.0.1.evil.test/"}, "url", "not a loopback"),
        (
            {"kind": "websocket", "url": "ws://127.0.0.1:1/", "send": "sk-" + "a" * 40},
            "send",
            "looks like",
        ),
        ({"kind": "grpc"}, "port", "a grpc probe needs a port"),
        ({"kind": "grpc", "port": 50051, "host": "10.0.0.1"}, "host", "is not this machine"),
    ],
)
def test_probe_specs_that_reach_off_this_machine_or_hold_a_token_are_refused(
    health: dict[str, Any], key: str, words: str
) -> None:
    with pytest.raises(ServiceSpecError) as caught:
        parse_spec("svc", {"argv": ["true"], "health": {"liveness": health}})
    message = str(caught.value)
    assert f"health.liveness.{key}" in message
    assert words in message
    assert "sk-" + "a" * 40 not in message  # the refused token is not echoed


def test_loopback_probe_urls_are_accepted() -> None:
    for url in ("ws://127.0.0.1:8765/ws", "wss://localhost/ws", "ws://[::1]:80/"):
        spec = parse_spec(
            "svc", {"argv": ["true"], "health": {"liveness": {"kind": "websocket", "url": url}}}
        )
        assert spec.health.liveness is not None
        assert spec.health.liveness.url == url


def test_a_grpc_probe_without_grpclib_installed_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "grpclib" else real(name, *a)
    )
    with pytest.raises(ServiceSpecError) as caught:
        parse_spec(
            "svc", {"argv": ["true"], "health": {"liveness": {"kind": "grpc", "port": 50051}}}
        )
    assert "needs the 'grpclib' package" in str(caught.value)
    assert "bastion[grpc]" in (caught.value.hint or "")
