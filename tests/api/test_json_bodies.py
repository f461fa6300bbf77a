"""JSON bodies a buggy client or an attacker sends: each is refused naming what and where.

Before ``api/json_body.py`` a body that was not UTF-8, nested 10 000 deep or carried a
5000-digit number got one 400, "could not be parsed as JSON", with a hint about nesting
whatever the cause; text that was not JSON got "invalid request: 0: JSON decode error"; and
a key sent twice was read as its last copy (``{"fix": false, "fix": true}`` fixed). Every
operation with a body in the OpenAPI document is walked, so a new one is covered the day it
is added; a refused body's secret appears in no answer and no log line.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bastion.app import Home
from tests.helpers import file_vault_env

from .daemon_process import RunningDaemon

SECRET = "s3cr3t-Gr\u00fcn-7f1c9a"


def _body_operations(app: FastAPI) -> list[tuple[str, str]]:
    ops = []
    for path, item in app.openapi()["paths"].items():
        for method, op in item.items():
            if "requestBody" in op:
                ops.append((method.upper(), path.replace("{name}", "x").replace("{key}", "k")))
    return ops


#: name -> (body, what the refusal's message must say)
BAD: dict[str, tuple[bytes, str]] = {
    "latin-1": (
        ('{"value": "' + SECRET + '"}').encode("latin-1"),
        "is not UTF-8 text (an invalid byte at offset 20)",
    ),
    "invalid-bytes": (b'{"value": "' + SECRET.encode() + b'\xff\xfe"}', "is not UTF-8 text"),
    "encoded-surrogate": (b'{"value": "' + SECRET.encode() + b'\xed\xb2\x80"}', "not UTF-8"),
    "duplicate-key": (
        ('{"value": "' + SECRET + '", "value": "' + SECRET + '"}').encode(),
        "has a key twice in one object (the object opening at line 1 column 1); the key is not"
        " repeated here",
    ),
    "nested-duplicate": (
        b'{"value": {"a": 1, "b": {"c": 1, "c": 2}}}',
        "has a key twice in one object (the object opening at line 1 column 25)",
    ),
    "not-json": (SECRET.encode(), "is not JSON: Expecting value at line 1 column 1"),
    "truncated": (('{"value": "' + SECRET + '"').encode(), "is not JSON: Expecting ',' delimiter"),
    "deep-10k": (b"[" * 10_000 + b"]" * 10_000, "nested too deeply"),
    "deep-in-value": (b'{"value": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "nested too deeply"),
    "5000-digits": (b'{"value": ' + b"9" * 5000 + b"}", "too many digits"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_every_body_route_refuses_a_bad_body_naming_the_problem_and_never_the_value(
    app: FastAPI,
    client: TestClient,
    opened: Home,
    case: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    body, says = BAD[case]
    caplog.set_level(logging.DEBUG)
    ops = _body_operations(app)
    assert len(ops) >= 4  # secrets put/reveal/reconcile, settings put, services put
    for method, path in ops:
        r = client.request(method, path, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (method, path, r.text)
        answer = r.json()
        assert answer["code"] == "invalid_request"
        assert says in answer["message"], (method, path, answer)
        assert answer["hint"]
        assert "s3cr3t" not in r.text
    assert opened.vault.list() == []
    assert client.get("/v1/settings").json()["items"] == []
    assert "s3cr3t" not in caplog.text
    assert "Traceback" not in caplog.text
    status = client.get("/v1/status").json()
    assert status["requests"]["rejected"]["invalid_json"] == len(ops)


def test_a_duplicate_flag_is_refused_not_read_as_its_last_copy(
    client: TestClient, opened: Home
) -> None:
    r = client.post(
        "/v1/secrets/reconcile",
        content=b'{"fix": false, "fix": true, "allow_drop_all": true}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert "has a key twice in one object" in r.json()["message"]
    assert "fix" not in r.json()["message"]  # a key is never repeated (see below)


@pytest.mark.parametrize(
    "key",
    ["sk-live-" + "Zq8" * 12, "k" * 300, "a\\u0000\\udc80", "value"],
    ids=["token", "long", "nul-surrogate", "declared"],
)
def test_a_repeated_key_is_never_repeated_in_the_refusal(
    client: TestClient, opened: Home, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A client may paste a secret as a key: the refusal names the object's place, not the
    key (before: the key quoted, cut at 40 characters)."""
    caplog.set_level(logging.DEBUG)
    r = client.put(
        "/v1/settings/k",
        content=('{"value": {"' + key + '": 1, "' + key + '": 2}}').encode(),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400
    message = r.json()["message"]
    assert "(the object opening at line 1 column 11)" in message
    assert key[:8] not in r.text
    assert key[:8] not in caplog.text
    assert client.get("/v1/settings").json()["items"] == []


ENCODINGS: dict[str, Callable[[str], bytes]] = {
    "utf-8": lambda text: text.encode(),
    "utf-8 with BOM": lambda text: b"\xef\xbb\xbf" + text.encode(),
    "utf-16 with BOM": lambda text: text.encode("utf-16"),
    "utf-16-le without BOM": lambda text: text.encode("utf-16-le"),
    "utf-16-be without BOM": lambda text: text.encode("utf-16-be"),
    "utf-32 with BOM": lambda text: text.encode("utf-32"),
}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_json_in_a_unicode_encoding_json_can_tell_is_read_as_the_same_text(
    client: TestClient, opened: Home, encoding: str
) -> None:
    body = ENCODINGS[encoding]('{"value": "' + SECRET + '"}')
    r = client.put("/v1/secrets/enc", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code in {200, 201}, r.text
    assert opened.vault.get("enc").reveal() == SECRET


def test_a_body_the_route_accepts_is_unchanged_by_the_check(client: TestClient) -> None:
    value: dict[str, Any] = {"a": [1, 2.5, None, True], "b": {"c": "\u00e9\u4e2d"}, "n": 2**70}
    r = client.put("/v1/settings/plain", json={"value": value})
    assert r.status_code == 200, r.text
    assert client.get("/v1/settings/plain").json()["value"] == value


@pytest.mark.posix
@pytest.mark.slow
def test_the_real_daemon_refuses_bad_bodies_and_logs_no_secret_or_traceback(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env = file_vault_env()
    subprocess.run(
        [sys.executable, "-m", "bastion", "--home", str(home), "init"],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=120,
    )
    daemon = RunningDaemon(home, "--log-level", "debug", env=env)
    try:
        headers = {"Authorization": f"Bearer {daemon.token}", "Content-Type": "application/json"}
        with httpx.Client(base_url=daemon.base, headers=headers, timeout=60) as http:
            for case, (body, says) in BAD.items():
                r = http.put("/v1/secrets/x", content=body)
                assert r.status_code == 400, (case, r.text)
                assert says in r.json()["message"], case
                assert "s3cr3t" not in r.text
            assert http.get("/v1/secrets").json()["items"] == []
    finally:
        daemon.terminate()
    log = daemon.log()
    assert "s3cr3t" not in log
    assert "Traceback" not in log


def test_a_10_mb_value_is_413_naming_the_limit_and_nothing_is_stored(
    client: TestClient, opened: Home
) -> None:
    body = b'{"value": "' + SECRET.encode() + b"a" * (10 * 1024 * 1024) + b'"}'
    r = client.put("/v1/secrets/big", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text[:300]
    answer = r.json()
    assert answer["code"] == "payload_too_large"
    limit = opened.config.api.max_body_bytes
    assert answer["message"] == f"request body too large: the limit is {limit} bytes"
    assert "max_body_bytes" in answer["hint"]
    assert "s3cr3t" not in r.text
    assert opened.vault.list() == []
