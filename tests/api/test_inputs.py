"""Inputs a token holder can send: none may break the store or leave it unreadable.

Each test here failed on the code before issue #15 §2: forged cursors answered 500, a deep
setting was stored and then broke ``GET /v1/settings`` for everyone, the 405 ``Allow`` named
only the first route's methods, ``{"fix": 0}`` passed as a boolean, a body-less POST from a
generated client was a 415, and ``HEAD /health`` was a 401. Tests walk the OpenAPI document
where they can, so a new route is covered the day it is added.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bastion.api import create_app
from bastion.api.dashboard import mint_login_code
from bastion.app import Home
from bastion.domains.settings.model import MAX_DEPTH, MAX_VALUE_BYTES

from .conftest import BASE, PORT


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# --- cursors ---------------------------------------------------------------------------------

FORGED = [[{"a": 1}, 1], [2**80, 1], [2**80], [1.5, 2**64], ["x", 1], [None], [[1], 2], [True, 1]]


@pytest.mark.parametrize("path", ["/v1/logs", "/v1/events", "/v1/activity"])
@pytest.mark.parametrize("value", FORGED, ids=[json.dumps(v)[:20] for v in FORGED])
def test_a_forged_cursor_is_400_naming_the_cursor(
    client: TestClient, opened: Home, path: str, value: Any
) -> None:
    opened.activity.record("test", "a.thing")
    opened.events.emit("test.kind", "subject", {})
    r = client.get(path, params={"cursor": _cursor(value)})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "invalid_request"
    assert body["message"].startswith("cursor: ")
    assert str(2**80) not in body["message"]  # the input is described, not echoed


def test_real_cursors_still_page_through_everything(client: TestClient, opened: Home) -> None:
    for i in range(7):
        opened.activity.record("test", f"step.{i}")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, "actor": "test"}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/activity", params=params).json()
        seen += [item["action"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"step.{i}" for i in reversed(range(7))]


# --- settings: depth and size ----------------------------------------------------------------


def _settings_rows(opened: Home) -> list[tuple[Any, ...]]:
    return opened.db.query("SELECT key FROM settings ORDER BY key")


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 300, 600, 900])
def test_a_setting_nested_too_deep_is_refused_and_nothing_is_stored(
    client: TestClient, opened: Home, depth: int
) -> None:
    events_before = opened.events.latest_id()
    r = client.put("/v1/settings/deep", json={"value": _nested(depth)})
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_value"
    assert str(MAX_DEPTH) in r.json()["message"]
    assert _settings_rows(opened) == []
    assert opened.events.latest_id() == events_before  # no setting.changed either
    listing = client.get("/v1/settings")
    assert listing.status_code == 200
    assert listing.json()["items"] == []


def test_the_depth_limit_is_inclusive(client: TestClient) -> None:
    r = client.put("/v1/settings/ok", json={"value": _nested(MAX_DEPTH)})
    assert r.status_code == 200, r.text
    assert client.get("/v1/settings/ok").json()["value"] == _nested(MAX_DEPTH)


def test_a_setting_over_the_size_limit_is_refused(client: TestClient, opened: Home) -> None:
    # Under the body limit once the body cap is raised; the value limit decides.
    big = "x" * (MAX_VALUE_BYTES - 1)  # + 2 quotes = one byte over
    r = client.put("/v1/settings/big", json={"value": big})
    assert r.status_code in {413, 422}, r.text  # the 1 MiB body cap is the first wall
    assert _settings_rows(opened) == []
    with pytest.raises(ValueError, match=f"the limit is {MAX_VALUE_BYTES}"):
        opened.settings.set("big", big)
    assert _settings_rows(opened) == []


def _store_raw(opened: Home, key: str, text: str) -> None:
    """A row as an older bastion (or another tool) could have written it."""
    opened.db.write(
        lambda tx: tx.execute(
            "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, 1.0)", (key, text)
        )
    )


def test_a_stored_value_that_cannot_be_read_is_an_error_row_not_a_broken_listing(
    client: TestClient, opened: Home
) -> None:
    opened.settings.set("a.fine", {"x": 1})
    _store_raw(opened, "b.deep", json.dumps(_nested(300)))
    _store_raw(opened, "c.deeper", "[" * 990 + "1" + "]" * 990)
    opened.settings.set("d.fine", "yes")

    r = client.get("/v1/settings")
    assert r.status_code == 200, r.text
    rows = {item["key"]: item for item in r.json()["items"]}
    assert rows["a.fine"]["value"] == {"x": 1}
    assert rows["a.fine"]["error"] is None
    assert rows["d.fine"]["value"] == "yes"
    for key in ("b.deep", "c.deeper"):
        assert rows[key]["value"] is None
        assert "cannot be read" in rows[key]["error"]

    one = client.get("/v1/settings/b.deep")
    assert one.status_code == 409
    assert one.json()["code"] == "setting_unreadable"
    assert client.get("/v1/settings/a.fine").json()["value"] == {"x": 1}
    # The way out the hint names works.
    assert client.delete("/v1/settings/b.deep").status_code == 200
    assert client.put("/v1/settings/c.deeper", json={"value": [1]}).status_code == 200
    assert all(i.get("error") is None for i in client.get("/v1/settings").json()["items"])


# --- 405 and Allow ---------------------------------------------------------------------------

_PATH_VALUES = {"key": "ui.theme", "name": "demo", "action": "start"}


def _documented(app: FastAPI) -> dict[str, set[str]]:
    """Each documented path (filled in) -> the methods of every documented template that
    matches it (``/v1/secrets/status`` is also ``/v1/secrets/{name}``)."""
    paths = app.openapi()["paths"]
    templates = [
        (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), {m.upper() for m in ops})
        for path, ops in paths.items()
    ]
    documented: dict[str, set[str]] = {}
    for path in paths:
        concrete = path.format(**_PATH_VALUES)
        documented[concrete] = set().union(
            *(methods for pattern, methods in templates if pattern.match(concrete))
        )
    return documented


def test_options_on_a_setting_lists_get_put_and_delete(client: TestClient) -> None:
    r = client.options("/v1/settings/x")
    assert r.status_code == 405
    assert r.headers["allow"] == "DELETE, GET, HEAD, PUT"
    assert r.json()["code"] == "method_not_allowed"


def test_every_405_lists_exactly_the_methods_its_path_serves(
    app: FastAPI, client: TestClient
) -> None:
    documented = _documented(app)
    assert len(documented) >= 20
    for path, methods in documented.items():
        r = client.request("TRACE", path)
        assert r.status_code == 405, (path, r.status_code)
        allow = set(r.headers["allow"].split(", "))
        # Every documented method is listed; HEAD may come along (with GET), nothing else.
        assert methods <= allow, (path, allow)
        assert allow - methods <= {"HEAD"}, (path, allow)
        for method in allow:  # ...and each one listed is really served there
            if path.endswith("/stream") and method == "GET":
                continue  # an event stream never ends; its HEAD shows the route is there
            served = client.request(method, path, json={} if method in {"POST", "PUT"} else None)
            assert served.status_code != 405, (path, method)


# --- strict booleans -------------------------------------------------------------------------


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = schema["components"]["schemas"][name]
    return node


def _boolean_fields(app: FastAPI) -> list[tuple[str, str, str]]:
    """(method, path, field) of every boolean property of every JSON request body."""
    schema = app.openapi()
    found = []
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            content = op.get("requestBody", {}).get("content", {}).get("application/json")
            if not content:
                continue
            body = _resolve(schema, content["schema"])
            for field, prop in body.get("properties", {}).items():
                if _resolve(schema, prop).get("type") == "boolean":
                    found.append((method.upper(), path.format(**_PATH_VALUES), field))
    return found


@pytest.mark.parametrize("lax", [0, 1, "no", "off", "yes", "true", "0", None])
def test_boolean_fields_take_only_json_booleans(
    app: FastAPI, client: TestClient, opened: Home, lax: Any
) -> None:
    fields = _boolean_fields(app)
    assert ("POST", "/v1/secrets/reconcile", "fix") in fields
    for method, path, field in fields:
        r = client.request(method, path, json={field: lax})
        assert r.status_code == 422, (method, path, field, lax, r.text)
        assert f"{field}: Input should be a valid boolean" in r.json()["message"]


def test_reconcile_fix_zero_is_refused_and_changes_nothing(
    client: TestClient, opened: Home
) -> None:
    opened.vault.set("kept", "value-1", actor="test")
    assert client.post("/v1/secrets/reconcile", json={"fix": 0}).status_code == 422
    assert client.post("/v1/secrets/reconcile", json={"fix": False}).status_code == 200
    assert [m.name for m in opened.vault.list()] == ["kept"]


# --- body-less POSTs and generated clients ---------------------------------------------------


def test_the_openapi_document_declares_the_bearer_token(app: FastAPI) -> None:
    schema = app.openapi()
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "The token in <home>/run/token.",
    }
    assert schema["security"] == [{"bearer": []}]
    assert schema["paths"]["/health"]["get"]["security"] == []
    assert "Content-Type" in schema["info"]["description"]


def test_a_generated_clients_bodyless_post_is_served(
    app: FastAPI, client: TestClient, opened: Home
) -> None:
    """What a client generated from /openapi.json sends for an operation without a request
    body: the bearer token, no body, no Content-Type. Before: 415 on every one of them."""
    schema = app.openapi()
    bodyless = [
        path.format(**_PATH_VALUES)
        for path, ops in schema["paths"].items()
        if "post" in ops and "requestBody" not in ops["post"]
    ]
    assert "/v1/shutdown" in bodyless
    stops: list[int] = []
    app.state.daemon.request_shutdown = lambda: stops.append(1)
    for path in bodyless:
        r = client.post(path)  # no content, no Content-Type
        assert r.status_code != 415, (path, r.text)
    assert stops == [1]


def test_the_content_type_rule_still_holds_where_csrf_can_reach(opened: Home, token: str) -> None:
    """A browser session (the dashboard's cookie) is what CSRF rides on: its body-less
    POSTs still need application/json, and a foreign origin is refused before that."""
    app = create_app(opened, port=PORT)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as browser:
        assert (
            browser.get(f"/login?t={mint_login_code(token)}", follow_redirects=False).status_code
            == 303
        )
        csrf = browser.get("/dashboard/session").json()["csrf_token"]
        headers = {"x-bastion-csrf": csrf, "origin": BASE}
        r = browser.post("/v1/dashboard/backups", headers=headers)
        assert r.status_code == 415, r.text
        ok = browser.post(
            "/v1/dashboard/backups", headers={**headers, "content-type": "application/json"}
        )
        assert ok.status_code != 415
        for ctype in ("text/plain", "application/x-www-form-urlencoded"):
            r = browser.post("/v1/dashboard/backups", headers={**headers, "content-type": ctype})
            assert r.status_code == 415
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as foreign:
        r = foreign.post(
            "/v1/shutdown",
            headers={"Authorization": f"Bearer {token}", "origin": "http://evil.example"},
        )
        assert r.status_code == 403


def test_a_bodyless_post_with_a_non_json_type_is_still_415(client: TestClient) -> None:
    r = client.post("/v1/shutdown", headers={"content-type": "text/plain"})
    assert r.status_code == 415


# --- HEAD /health ----------------------------------------------------------------------------


def test_head_health_answers_like_get_without_a_token(anon: TestClient) -> None:
    got = anon.get("/health")
    head = anon.head("/health")
    assert got.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-length"] == got.headers["content-length"]
    # HEAD is public on public paths only.
    assert anon.head("/v1/status").status_code == 401
