"""A name the client chose is repeated in a refusal only when the route declares it.

A client may paste a secret where a name goes: as a body key (``{"sk-live-...": "x"}``), a
key sent twice, a query parameter's name or value, a header's name, a path segment. Before,
a 422 for an unexpected body field quoted the field (``sk-live-...: Extra inputs are not
permitted``), a repeated key was quoted (cut at 40 characters), ``since=<token>`` was quoted
whole by the time reader, and ``/v1/secrets/status?names=<token>/x`` by the vault's name
check. Declared names (fields of the route's models, its parameters) and plain numbers and
times are still shown: they are what makes a refusal useful.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bastion.app import Home
from tests.helpers import file_vault_env

from .daemon_process import RunningDaemon

SECRET = "sk-live-" + "Qx7" * 12
NOT_REPEATED = "not repeated here: it may hold a secret"
TIME_PARAMS = [
    *(
        (path, param)
        for path in ("/v1/logs", "/v1/events", "/v1/activity")
        for param in ("since", "until")
    ),
    ("/v1/dashboard/db/samples", "since"),
]


def _model_bodies(app: FastAPI) -> list[tuple[str, str, list[str]]]:
    """(method, path, the body model's fields) of every route whose body is a model."""
    spec = app.openapi()
    schemas = spec["components"]["schemas"]
    found = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            content = op.get("requestBody", {}).get("content", {})
            ref = content.get("application/json", {}).get("schema", {}).get("$ref")
            if ref is None:
                continue  # a free-form body (a service spec): checked by the daemon test
            fields = sorted(schemas[ref.rsplit("/", 1)[1]]["properties"])
            url = re.sub(r"\{(\w+)\}", "x", path)
            found.append((method.upper(), url, fields))
    return found


def test_an_unexpected_body_field_is_not_repeated_and_the_hint_names_the_fields(
    full: TestClient, full_app: FastAPI, opened: Home, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bodies = _model_bodies(full_app)
    assert len(bodies) >= 5  # secrets put/reveal/reconcile, settings put, dashboard checks
    for method, url, fields in bodies:
        r = full.request(method, url, json={SECRET: "x"})
        assert r.status_code == 422, (method, url, r.text)
        answer = r.json()
        assert "an unexpected field (its name is not repeated" in answer["message"]
        assert answer["hint"] == (
            f"Send only the fields accepted there: {', '.join(fields)} (see /openapi.json)."
        )
        assert "Qx7" not in r.text
    assert "Qx7" not in caplog.text
    assert opened.vault.list() == []


def test_declared_names_are_still_shown(full: TestClient) -> None:
    r = full.put("/v1/secrets/x", json={"value": 5, "expected_version": "a"})
    message = r.json()["message"]
    assert "value: Input should be a valid string" in message
    assert "expected_version: Input should be a valid integer" in message


def test_a_key_of_a_free_form_object_in_a_location_is_not_shown() -> None:
    from bastion.api.errors import _describe_validation, declared_names

    route = type("Route", (), {"dependant": None, "body_field": None})()
    errors = [
        {"type": "int_type", "loc": ("body", "spec", SECRET, 0), "msg": "Input should be"},
        {"type": "extra_forbidden", "loc": ("body", SECRET), "msg": "Extra inputs"},
        {
            "type": "value_error",
            "loc": ("query", "x"),
            "msg": f"Value error, {SECRET!r} bad",
            "input": SECRET,
        },
    ]
    message, _ = _describe_validation(errors, route)
    assert SECRET not in message
    assert "<a key>.<a key>.0: Input should be" in message
    assert "body: an unexpected field" in message
    assert "<a key>: Value error, '<the value>' bad" in message
    assert declared_names(route) >= {"body", "query"}


@pytest.mark.parametrize(("path", "param"), TIME_PARAMS)
def test_a_token_given_as_a_time_is_not_repeated(full: TestClient, path: str, param: str) -> None:
    r = full.get(path, params={param: SECRET})
    assert r.status_code == 422, r.text
    assert "Qx7" not in r.text
    assert f"query.{param}: the value ({NOT_REPEATED}) is not a time" in r.json()["message"]
    # A time's characters are quoted: the client sees which of its times was refused.
    r = full.get(path, params={param: "2026-13-45T00:00:00Z"})
    assert r.status_code == 422
    assert "'2026-13-45T00:00:00Z' is not a time" in r.json()["message"]


def test_a_status_query_names_the_bad_name_by_its_place_only(full: TestClient) -> None:
    r = full.get("/v1/secrets/status", params={"names": f"OK,{SECRET}/x"})
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_name"
    assert "names: name 2 of the list has characters outside" in r.json()["message"]
    assert "Qx7" not in r.text


def _home_bytes(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file())


@pytest.mark.posix
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_real_daemon_repeats_no_secret_sent_as_a_name_anywhere(tmp_path: Path) -> None:
    """Every place a client can put a name, through a real daemon logging at debug: the
    token is in no answer, no log line, and no byte of the home (bastion.db and its WAL:
    events, activity, logs; the services folder), once the daemon has stopped."""
    secret = "sk-live-" + secrets.token_hex(20)
    gh = "ghp_" + secret[8:44]
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
    argv = [sys.executable, "-c", "pass"]
    answers: list[str] = []
    try:
        auth = {"Authorization": f"Bearer {daemon.token}"}
        with httpx.Client(base_url=daemon.base, headers=auth, timeout=60) as http:
            spec = http.get("/openapi.json").json()
            body_routes = [
                (method.upper(), re.sub(r"\{(\w+)\}", "x", path))
                for path, item in spec["paths"].items()
                for method, op in item.items()
                if "requestBody" in op
            ]
            assert len(body_routes) >= 6
            requests: list[tuple[str, str, dict[str, Any]]] = []
            for method, url in body_routes:
                requests.append((method, url, {"json": {secret: "x"}}))
                dup = b'{"' + secret.encode() + b'": 1, "' + secret.encode() + b'": 2}'
                requests.append((method, url, {"content": dup}))
            requests += [
                ("PUT", "/v1/services/x", {"json": {"argv": argv, secret: 1}}),
                ("PUT", "/v1/services/x", {"json": {"argv": argv, "health": {secret: 1}}}),
                ("PUT", "/v1/services/x", {"json": {"argv": argv, "stop": {secret: 1}}}),
                ("PUT", "/v1/services/x", {"json": {"argv": argv, "secrets": {"K": secret}}}),
                ("PUT", "/v1/settings/x", {"json": {"value": 1, "note": {secret: 1}}}),
                # A token shaped like an environment variable's name (a GitHub token).
                ("PUT", "/v1/services/x", {"json": {"argv": argv, "env": {gh: "a\u0000"}}}),
                ("GET", "/v1/logs", {"params": {secret: "1"}}),  # ignored: a 200
                ("GET", "/v1/secrets", {"params": {secret: "1", "limit": secret}}),
                ("GET", "/v1/logs", {"params": {"since": secret}}),
                ("GET", "/v1/activity", {"params": {"offset": secret}}),
                ("GET", "/v1/secrets/status", {"params": {"names": f"A,{secret}/x"}}),
                ("GET", "/v1/secrets", {"params": {"scope": secret + "/"}}),
                ("GET", "/v1/status", {"headers": {secret: "1"}}),  # ignored: a 200
                ("GET", "/v1/logs/stream", {"headers": {"Last-Event-ID": secret}}),
                ("GET", f"/v1/secrets/{secret}%00", {}),
                ("GET", f"/v1/settings/{secret}%2F", {}),
                ("GET", f"/v1/services/{secret.upper()}", {}),
                ("GET", f"/v1/{secret}/x", {}),
                ("POST", "/v1/dashboard/checks", {"json": {secret: 1}}),
                ("GET", "/v1/dashboard/db/samples", {"params": {"since": secret}}),
                ("GET", "/login", {"params": {"t": secret}}),
            ]
            for method, url, given in requests:
                sent = dict(given)
                if "json" in given or "content" in given:
                    sent["headers"] = {"Content-Type": "application/json"}
                r = http.request(method, url, **sent)
                ignored = (url in {"/v1/logs", "/v1/status"} and "headers" in given) or (
                    url == "/v1/logs" and secret in given.get("params", {})
                )
                assert (r.status_code == 200) == ignored, (method, url, r.text)
                answers.append(r.text)
            assert http.get("/v1/secrets").json()["items"] == []
            services = http.get("/v1/services").json()["items"]
            assert [s["name"] for s in services] == []
    finally:
        daemon.terminate()
    joined = "\n".join(answers)
    assert secret[8:20] not in joined, joined
    # Positive control: the refusals were read (else the scan proves nothing).
    assert "an unexpected field" in joined
    assert "has a key twice in one object" in joined
    log = daemon.log()
    assert "listening" in log
    assert secret[8:20] not in log
    assert "Traceback" not in log
    raw = _home_bytes(home)
    assert secret[8:20].encode() not in raw
    assert json.dumps(secret)[1:13].encode() not in raw
