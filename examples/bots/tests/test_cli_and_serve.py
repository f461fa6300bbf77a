"""Seed 003 plan 01-05: the CLI and the REST API wired to the store, run as a user runs them
(``python -m examples.bots ...`` in real child processes): bots created and listed, the first
API key minted without Python, then used against ``serve`` on real loopback sockets, where a
foreign ``Host`` (DNS rebinding) or a browser ``Origin`` is refused before any route."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[3]


def _bots(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "examples.bots", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _ok(env: dict[str, str], *args: str) -> str:
    done = _bots(env, *args)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def test_create_list_and_mint_the_first_api_key_without_python(env: dict[str, str]) -> None:
    made = json.loads(
        _ok(env, "create", "helper", "--name", "Helper", "--category", "support", "--json")
    )
    assert made["slug"] == "helper"
    _ok(env, "create", "writer", "--name", "Writer", "--category", "docs")
    _ok(env, "create", "old", "--name", "Old", "--status", "archived")

    listed = json.loads(_ok(env, "list", "--sort", "name", "--order", "asc", "--json"))
    assert [b["slug"] for b in listed["items"]] == ["helper", "old", "writer"]
    assert listed["total"] == 3
    support = json.loads(_ok(env, "list", "--category", "support", "--json"))
    assert [b["id"] for b in support["items"]] == [made["id"]]
    page = json.loads(
        _ok(env, "list", "--sort", "slug", "--order", "asc", "-n", "1", "--offset", "1", "--json")
    )
    assert ([b["slug"] for b in page["items"]], page["total"]) == (["old"], 3)
    assert "1-3 of 3 bots" in _ok(env, "list")

    minted = _bots(env, "api-key", "create", "ci")
    assert minted.returncode == 0, minted.stderr
    key = minted.stdout.strip()
    assert key.startswith("bot_")
    assert minted.stdout == key + "\n"  # alone on stdout: KEY=$(... api-key create ci)
    assert "shown once" in minted.stderr
    assert key not in minted.stderr
    keys = _ok(env, "api-key", "list")
    assert "ci" in keys
    assert key[:8] in keys
    assert key not in keys
    data_dir = Path(env["BOTERNITY_DATA_DIR"])
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path  # only its SHA-256 is stored


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("create", "Bad Slug", "--name", "x"), 2, "Invalid value for SLUG"),
        (("create", "ok", "--name", ""), 2, "1-200 characters"),
        (("list", "--sort", "id; DROP TABLE bots"), 2, "Invalid value for '--sort'"),
        (("api-key", "revoke", "no-such-key"), 66, "no api key with id 'no-such-key'"),
        (
            ("serve", "--host", "0.0.0.0"),  # noqa: S104 - refused, the point
            2,
            "not a loopback address",
        ),
        (("serve", "--host", "192.168.1.10"), 2, "not a loopback address"),
    ],
)
def test_bad_input_is_named_without_a_traceback(
    env: dict[str, str], args: tuple[str, ...], code: int, says: str
) -> None:
    done = _bots(env, *args)
    assert done.returncode == code, done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr


def test_a_taken_slug_is_a_conflict(env: dict[str, str]) -> None:
    _ok(env, "create", "twin", "--name", "Twin")
    done = _bots(env, "create", "twin", "--name", "Again")
    assert done.returncode == 65
    assert "error: conflict" in done.stderr
    assert "hint:" in done.stderr


@pytest.fixture
def server(env: dict[str, str]) -> Iterator[tuple[int, str, subprocess.Popen[str]]]:
    """``serve --port 0`` in a child process, with an API key minted by the CLI."""
    key = _ok(env, "api-key", "create", "serve-test").strip()
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.bots", "serve", "--port", "0"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        url = wait_until(lambda: lines[0] if lines else "", timeout=60, what="the listening line")
        port = int(url.strip().rsplit(":", 1)[1])
        yield port, key, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        reader.join(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _request(
    port: int,
    path: str,
    headers: dict[str, str],
    *,
    address: str = "127.0.0.1",
    method: str = "GET",
    body: str | None = None,
) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection(address, port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body.encode() if body is not None else None)
        response = conn.getresponse()
        data = json.loads(response.read() or b"{}")
        return response.status, data
    finally:
        conn.close()


def test_serve_answers_on_loopback_with_the_host_checked(
    server: tuple[int, str, subprocess.Popen[str]],
) -> None:
    port, key, proc = server
    auth = {"Authorization": f"Bearer {key}"}

    status, body = _request(
        port,
        "/bots",
        {"Host": f"127.0.0.1:{port}", **auth, "Content-Type": "application/json"},
        method="POST",
        body=json.dumps({"slug": "served", "name": "Served"}),
    )
    assert status == 201, body
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}"):
        status, body = _request(port, "/bots", {"Host": host, **auth})
        assert status == 200, (host, body)
        items = body["items"]
        assert isinstance(items, list)
        assert [b["slug"] for b in items] == ["served"]

    # DNS rebinding: the right socket, a foreign name. Also the wrong port, no Host at all.
    for headers in (
        {"Host": f"evil.example:{port}"},
        {"Host": f"127.0.0.1:{port + 1}"},
        {"Host": "127.0.0.1"},
        {},
    ):
        status, body = _request(port, "/bots", {**headers, **auth})
        assert (status, body["code"]) == (403, "forbidden"), headers
    status, body = _request(
        port, "/bots", {"Host": f"127.0.0.1:{port}", "Origin": "https://evil.example", **auth}
    )
    assert (status, body["code"]) == (403, "forbidden")
    # The Host check comes first: a rebinding page learns nothing about the key either.
    status, _ = _request(port, "/bots", {"Host": f"evil.example:{port}"})
    assert status == 403
    status, body = _request(port, "/bots", {"Host": f"localhost:{port}"})
    assert (status, body["code"]) == (401, "unauthorized")

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_two_host_headers_are_refused(server: tuple[int, str, subprocess.Popen[str]]) -> None:
    port, key, _ = server
    raw = (
        f"GET /bots HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil.example:{port}\r\n"
        f"Authorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(raw)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 403"), reply[:200]
