"""Every time the API writes is an RFC 3339 UTC string (the CLI's ``--json`` writes the same),
the OpenAPI document says so, and ``since``/``until`` take that form back (or Unix seconds)."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from bastion._time import rfc3339
from bastion.app import Home
from bastion.domains.logs import LogRecord

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
TIME_KEY = re.compile(r"(^|_)(at|ts|since|until)$")


def _times(data: Any) -> list[Any]:
    found: list[Any] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if TIME_KEY.search(key) and not isinstance(value, dict | list):
                if value is not None:
                    found.append(value)
            else:
                found += _times(value)
    elif isinstance(data, list):
        for item in data:
            found += _times(item)
    return found


def test_every_time_in_the_answers_is_rfc3339_utc(client: TestClient, opened: Home) -> None:
    assert client.put("/v1/secrets/K", json={"value": "v"}).status_code == 201
    assert client.post("/v1/secrets/K/reveal", json={}).status_code == 200
    assert client.put("/v1/settings/ui.theme", json={"value": "dark"}).status_code in (200, 201)
    opened.logs.insert_batch(
        [LogRecord(ts=1_700_000_000.25, level="info", source="a", stream="stdout", message="m")]
    )
    opened.events.emit("test.kind", "x", {"n": 1})
    seen = 0
    for path in (
        "/v1/secrets",
        "/v1/secrets/K",
        "/v1/settings",
        "/v1/settings/ui.theme",
        "/v1/logs",
        "/v1/events",
        "/v1/activity",
        "/v1/status",
        "/v1/db/status",
        "/v1/db/migrations",
    ):
        r = client.get(path)
        assert r.status_code == 200, (path, r.text)
        for value in _times(r.json()):
            assert isinstance(value, str), (path, value)
            assert RFC3339.match(value), (path, value)
            seen += 1
    assert seen >= 10
    log = client.get("/v1/logs").json()["items"][0]
    assert log["ts"] == "2023-11-14T22:13:20.250000Z"


def test_since_accepts_what_the_answers_carry(client: TestClient, opened: Home) -> None:
    opened.logs.insert_batch(
        [
            LogRecord(ts=1_700_000_000.0, level="info", source="a", stream="stdout", message="old"),
            LogRecord(ts=1_700_000_100.0, level="info", source="a", stream="stdout", message="new"),
        ]
    )
    newest = client.get("/v1/logs", params={"limit": 1}).json()["items"][0]
    for since in (newest["ts"], "1700000100", "2023-11-14T22:15:00+00:00"):
        items = client.get("/v1/logs", params={"since": since}).json()["items"]
        assert [i["message"] for i in items] == ["new"], since
    bad = client.get("/v1/logs", params={"since": "yesterday"})
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request")


def test_a_time_sent_back_as_since_includes_its_own_row(client: TestClient, opened: Home) -> None:
    # Stored times have more digits than the wire's microseconds; the wire form is truncated,
    # never rounded up past the row (which "since" would then skip).
    opened.logs.insert_batch(
        [
            LogRecord(ts=ts, level="info", source="a", stream="stdout", message=str(ts))
            for ts in (1_700_000_100.0000007, 1_700_000_200.9999998, 1_700_000_300.5)
        ]
    )
    for item in client.get("/v1/logs", params={"limit": 10}).json()["items"]:
        since = client.get("/v1/logs", params={"since": item["ts"], "order": "asc"}).json()
        assert since["items"][0]["message"] == item["message"], item
    assert rfc3339(1_700_000_200.9999998) == "2023-11-14T22:16:40.999999Z"  # not 41.000000
    assert rfc3339(1_700_000_300.5) == "2023-11-14T22:18:20.500000Z"


def test_openapi_says_times_are_date_time_strings(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for model, fields in {
        "LogOut": ["ts"],
        "EventOut": ["ts"],
        "ActivityOut": ["ts"],
        "SecretInfo": ["created_at", "updated_at", "last_used_at"],
        "SettingOut": ["updated_at"],
        "ServiceOut": ["since", "next_start_at"],
        "ProbeOut": ["at"],
        "MigrationRow": ["applied_at"],
    }.items():
        props = schemas[model]["properties"]
        for field in fields:
            text = str(props[field])
            assert "date-time" in text, (model, field, props[field])
            assert "'number'" not in text, (model, field, props[field])


def test_since_that_is_no_instant_is_a_422(client: TestClient, opened: Home) -> None:
    """`since=nan` (float() reads it) answered 200 with no items: a bound matching nothing."""
    for since in ("nan", "inf", "-inf", "1e999"):
        bad = client.get("/v1/logs", params={"since": since})
        assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request"), since
        assert "is not a time" in bad.json()["message"]
