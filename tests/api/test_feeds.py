"""Settings, logs, events and activity routes over real tables, and their SSE tails."""

from __future__ import annotations

import re
import time

import pytest
from fastapi.testclient import TestClient

from bastion.app import Home
from bastion.client import DaemonClient
from bastion.domains.logs import LogRecord
from bastion.errors import InvalidRequest

from .conftest import LiveServer


def test_settings_crud_and_prefix_listing(client: TestClient, opened: Home) -> None:
    assert client.get("/v1/settings/ui.theme").status_code == 404
    r = client.put("/v1/settings/ui.theme", json={"value": "dark"})
    assert r.status_code == 200
    assert r.json()["value"] == "dark"
    client.put("/v1/settings/ui.font", json={"value": {"size": 12, "family": "mono"}})
    client.put("/v1/settings/speech.model", json={"value": 3})
    assert opened.settings.get("ui.font") == {"size": 12, "family": "mono"}

    got = client.get("/v1/settings/ui.font").json()
    assert got["value"] == {"size": 12, "family": "mono"}
    listing = client.get("/v1/settings", params={"prefix": "ui."}).json()
    assert [s["key"] for s in listing["items"]] == ["ui.font", "ui.theme"]
    assert listing["total"] == 2

    assert client.put("/v1/settings/x", json={"value": None}).status_code == 400
    assert client.put("/v1/settings/x", json={}).status_code == 422
    assert client.delete("/v1/settings/ui.theme").json() == {"key": "ui.theme", "deleted": True}
    r = client.delete("/v1/settings/ui.theme")
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    # Every write was recorded as an event, naming the key, never the value.
    kinds = client.get("/v1/events", params={"kind": "setting.changed", "limit": 10}).json()
    assert {e["subject"] for e in kinds["items"]} >= {"ui.theme", "ui.font", "speech.model"}
    assert "dark" not in str(kinds)


def _log(home: Home, n: int, source: str = "svc", level: str = "info") -> None:
    now = time.time()
    home.logs.insert_batch(
        LogRecord(
            ts=now + i * 1e-3, level=level, source=source, stream="stdout", message=f"line {i}"
        )
        for i in range(n)
    )


def test_logs_query_filters_and_cursor_pages(client: TestClient, opened: Home) -> None:
    _log(opened, 5, source="a")
    _log(opened, 3, source="b", level="error")
    page = client.get("/v1/logs", params={"source": "a", "limit": 2, "order": "asc"}).json()
    assert [r["message"] for r in page["items"]] == ["line 0", "line 1"]
    nxt = client.get(
        "/v1/logs",
        params={"source": "a", "limit": 2, "order": "asc", "cursor": page["next_cursor"]},
    ).json()
    assert [r["message"] for r in nxt["items"]] == ["line 2", "line 3"]
    errors = client.get("/v1/logs", params={"level": "warning"}).json()
    assert {r["source"] for r in errors["items"]} == {"b"}
    text = client.get("/v1/logs", params={"text": "LINE 4"}).json()
    assert [r["message"] for r in text["items"]] == ["line 4"]
    bad = client.get("/v1/logs", params={"cursor": "garbage!"})
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_request")
    assert client.get("/v1/logs", params={"level": "loud"}).status_code == 422
    assert client.get("/v1/logs", params={"order": "sideways"}).status_code == 422


def test_activity_offset_and_cursor_paging(client: TestClient, opened: Home) -> None:
    for i in range(4):
        opened.activity.record("cli", "secret.set", f"secret:k{i}")
    page = client.get("/v1/activity", params={"limit": 3, "offset": 0}).json()
    assert (page["total"], page["next_offset"], len(page["items"])) == (4, 3, 3)
    assert client.get("/v1/activity", params={"sort": "details"}).status_code == 422
    r = client.get("/v1/activity", params={"cursor": "x", "offset": 1})
    assert r.status_code == 400


@pytest.mark.timeout(90)
def test_logs_sse_tail_resumes_after_last_event_id(live: LiveServer, opened: Home) -> None:
    client = DaemonClient(live.port, live.token, timeout=30)
    _log(opened, 3, source="before")
    stream = client.stream("/v1/logs/stream", query={"backlog": 2}, timeout=30)
    backlog = [next(stream), next(stream)]
    assert [e.json()["message"] for e in backlog] == ["line 1", "line 2"]
    assert all(e.event == "log" for e in backlog)
    _log(opened, 2, source="live")
    fresh = [next(stream), next(stream)]
    assert [e.json()["source"] for e in fresh] == ["live", "live"]
    assert int(fresh[1].id) > int(fresh[0].id) > int(backlog[1].id)
    stream.close()

    # Reconnect with Last-Event-ID: the rows after it, nothing repeated, nothing lost.
    _log(opened, 2, source="while-away")
    resumed = client.stream("/v1/logs/stream", last_event_id=fresh[0].id, timeout=30)
    got = [next(resumed) for _ in range(3)]
    assert [e.json()["source"] for e in got] == ["live", "while-away", "while-away"]
    assert got[0].id == fresh[1].id
    resumed.close()

    for bad in ("abc", "-1", str(2**64)):
        with pytest.raises(InvalidRequest):
            client.stream("/v1/logs/stream", last_event_id=bad, timeout=30)


@pytest.mark.timeout(90)
def test_events_and_activity_streams(live: LiveServer, opened: Home) -> None:
    client = DaemonClient(live.port, live.token, timeout=30)
    events = client.stream("/v1/events/stream", query={"kind": "setting.changed"}, timeout=30)
    activity = client.stream("/v1/activity/stream", timeout=30)
    client.put("/v1/settings/a.b", {"value": 1})
    e = next(events)
    assert (e.event, e.json()["subject"]) == ("event", "a.b")
    opened.activity.record("tester", "poke", "thing")
    a = next(activity)
    assert (a.event, a.json()["action"]) == ("activity", "poke")
    events.close()
    activity.close()


def test_the_hot_settings_read_answers_like_its_documented_route(client: TestClient) -> None:
    client.put("/v1/settings/a.b", json={"value": {"x": [1, 2.5, "é"]}})
    r = client.get("/v1/settings/a.b")
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["key"] == "a.b"
    assert body["value"] == {"x": [1, 2.5, "é"]}
    # RFC 3339 UTC like every time the API writes, and the same as the documented route's
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", body["updated_at"])
    assert body == client.get("/v1/settings", params={"prefix": "a.b"}).json()["items"][0]
    bad = client.get("/v1/settings/bad key!")
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request")
    missing = client.get("/v1/settings/nope")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    # Behind the same front door as every route.
    assert client.get("/v1/settings/a.b", headers={"Authorization": "Bearer x"}).status_code == 401


@pytest.mark.parametrize(
    "key", ["..%2F..%2Fbastion.db", "%2E%2E", ".hidden", "a%00b", "a%2Fb", "k" * 300]
)
def test_traversal_in_setting_keys_is_refused(client: TestClient, opened: Home, key: str) -> None:
    for response in (
        client.get(f"/v1/settings/{key}"),
        client.put(f"/v1/settings/{key}", json={"value": 1}),
        client.delete(f"/v1/settings/{key}"),
    ):
        assert response.status_code in {404, 405, 422}, (key, response.text)
    assert opened.settings.list() == []


def test_put_setting_refuses_a_credential_unless_allowed(client: TestClient, opened: Home) -> None:
    key = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
    r = client.put("/v1/settings/openai.api_key", json={"value": key})
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "plaintext_credential"
    assert "bastion secrets set" in body["hint"]
    assert key not in r.text
    assert opened.settings.get("openai.api_key") is None
    r = client.put("/v1/settings/openai.api_key", json={"value": key, "allow_plaintext": 1})
    assert r.status_code in (400, 422)  # a strict boolean: 1 is not true
    r = client.put("/v1/settings/openai.api_key", json={"value": key, "allow_plaintext": True})
    assert r.status_code == 200
    assert opened.settings.get("openai.api_key") == key
