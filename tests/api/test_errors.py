"""The one error table: every bastion error, validation failure and crash, as the API says it."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from bastion.api.errors import INTERNAL
from bastion.errors import iter_error_classes

SENTINEL = "sentinel-5f1c2e-not-for-output"

ALL_ERRORS = [cls for _, cls in iter_error_classes()]


class _Body(BaseModel):
    count: int


@pytest.fixture
def raising_app(app: FastAPI) -> FastAPI:
    """The real app plus routes that fail on purpose (added to this test's instance only)."""
    by_code = {cls.code: cls for cls in ALL_ERRORS}

    @app.get("/v1/_raise/{code}")
    async def raise_bastion(code: str) -> None:
        raise by_code[code](f"failed on purpose ({code})")

    @app.get("/v1/_crash")
    async def crash() -> None:
        raise RuntimeError(f"boom with {SENTINEL}")

    @app.get("/v1/_crash/{name}")
    async def crash_at(name: str) -> None:
        raise RuntimeError("boom")

    @app.get("/v1/_value")
    async def value() -> None:
        raise ValueError(f"unknown sort key {SENTINEL!r}")

    @app.post("/v1/_body")
    async def body(payload: _Body) -> dict[str, int]:
        return {"count": payload.count}

    return app


def test_every_bastion_error_maps_to_its_status_and_body(
    raising_app: FastAPI, client: TestClient
) -> None:
    assert len(ALL_ERRORS) > 40
    for cls in ALL_ERRORS:
        r = client.get(f"/v1/_raise/{cls.code}")
        assert r.status_code == cls.http_status, cls.__name__
        assert r.json() == {
            "code": cls.code,
            "message": f"failed on purpose ({cls.code})",
            "hint": cls.default_hint,
        }, cls.__name__


def test_a_crash_is_a_500_that_echoes_nothing_and_logs_the_traceback(
    raising_app: FastAPI, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="bastion.api"):
        r = client.get("/v1/_crash", params={"q": SENTINEL})
    assert r.status_code == 500
    assert r.json() == INTERNAL
    assert SENTINEL not in r.text
    assert "Traceback" in caplog.text
    assert "RuntimeError" in caplog.text


def test_a_crash_logs_the_routes_template_not_the_clients_path(
    raising_app: FastAPI, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A path is the client's text (a token pasted as a name): the log line of a 500 names
    the route's template (before: the path, whole)."""
    with caplog.at_level(logging.ERROR, logger="bastion.api"):
        r = client.get(f"/v1/_crash/{SENTINEL}")
    assert r.status_code == 500
    assert "unhandled error in GET /v1/_crash/{name}" in caplog.text
    assert SENTINEL not in caplog.text


def test_a_stray_value_error_is_a_400_without_its_text(
    raising_app: FastAPI, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    r = client.get("/v1/_value")
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_request"
    assert SENTINEL not in r.text
    # Nor in the log (it may be a secret from the body): the class and place are logged.
    assert SENTINEL not in caplog.text
    assert "request refused by a ValueError raised at " in caplog.text
    assert "test_errors.py:" in caplog.text


def test_validation_errors_name_the_field_but_never_the_value(
    raising_app: FastAPI, client: TestClient
) -> None:
    r = client.post("/v1/_body", json={"count": SENTINEL, "extra": SENTINEL})
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "invalid_request"
    assert "count" in body["message"]
    assert SENTINEL not in r.text
    r = client.post(
        "/v1/_body",
        content=b"{not json " + SENTINEL.encode(),
        headers={"Content-Type": "application/json"},
    )
    # Malformed syntax is refused before validation (api/json_body.py): a 400 naming the place.
    assert r.status_code == 400
    assert "is not JSON: Expecting property name enclosed in double quotes" in r.json()["message"]
    assert SENTINEL not in r.text


def test_unknown_routes_and_methods(client: TestClient) -> None:
    r = client.get("/v1/nothing-here")
    assert (r.status_code, r.json()["code"]) == (404, "route_not_found")
    r = client.put("/v1/status", json={})
    assert (r.status_code, r.json()["code"]) == (405, "method_not_allowed")


def test_openapi_documents_the_error_body(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert set(spec["components"]["schemas"]["ErrorBody"]["required"]) == {
        "code",
        "message",
        "hint",
    }
    status = spec["paths"]["/v1/status"]["get"]["responses"]
    assert status["401"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorBody")


def test_unparseable_json_is_a_400_invalid_request(client: TestClient) -> None:
    deep = '{"value": ' + "[" * 100_000 + "]" * 100_000 + "}"
    r = client.put("/v1/settings/deep", content=deep, headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()["code"]) == (400, "invalid_request")
