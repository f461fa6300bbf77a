"""Secrets routes over a real vault (encrypted-file backend, real vault.db in tmp_path)."""

from __future__ import annotations

import dataclasses

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bastion.api import create_app
from bastion.app import Home

from .conftest import BASE, PORT

SENTINEL = "sk-sentinel-7d2f0c9a1b-never-in-output"


def test_set_list_status_delete_never_return_the_value(client: TestClient, opened: Home) -> None:
    r = client.put("/v1/secrets/OPENAI_API_KEY", json={"value": SENTINEL})
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 1
    assert SENTINEL not in r.text
    r = client.put("/v1/secrets/OPENAI_API_KEY", json={"value": SENTINEL + "2"})
    assert (r.status_code, r.json()["version"]) == (200, 2)
    client.put("/v1/secrets/bot-token", json={"value": SENTINEL, "scope": "bot:42"})

    # The library sees what the API stored.
    assert opened.vault.get("OPENAI_API_KEY").reveal() == SENTINEL + "2"

    listing = client.get("/v1/secrets")
    assert listing.status_code == 200
    page = listing.json()
    assert page["total"] == 2
    assert {(i["scope"], i["name"]) for i in page["items"]} == {
        ("global", "OPENAI_API_KEY"),
        ("bot:42", "bot-token"),
    }
    assert "fingerprint" not in page["items"][0]

    only_bot = client.get("/v1/secrets", params={"scope": "bot:42"}).json()
    assert [i["name"] for i in only_bot["items"]] == ["bot-token"]

    status = client.get(
        "/v1/secrets/status", params={"names": "OPENAI_API_KEY,ANTHROPIC_API_KEY"}
    ).json()
    assert status["secrets"]["OPENAI_API_KEY"]["configured"] is True
    assert status["secrets"]["ANTHROPIC_API_KEY"]["configured"] is False

    meta = client.get("/v1/secrets/OPENAI_API_KEY").json()
    assert meta["version"] == 2

    for response in (listing, client.get("/v1/secrets/status")):
        assert SENTINEL not in response.text

    r = client.delete("/v1/secrets/OPENAI_API_KEY")
    assert r.status_code == 200
    r = client.get("/v1/secrets/OPENAI_API_KEY")
    assert (r.status_code, r.json()["code"]) == (404, "secret_not_found")
    assert client.delete("/v1/secrets/OPENAI_API_KEY").status_code == 404


def test_list_paginates_with_whitelisted_sort(client: TestClient) -> None:
    for i in range(5):
        client.put(f"/v1/secrets/k{i}", json={"value": f"v{i}"})
    first = client.get("/v1/secrets", params={"limit": 2, "sort": "name"}).json()
    assert [i["name"] for i in first["items"]] == ["k0", "k1"]
    assert (first["total"], first["next_offset"]) == (5, 2)
    last = client.get("/v1/secrets", params={"limit": 2, "offset": 4}).json()
    assert [i["name"] for i in last["items"]] == ["k4"]
    assert last["next_offset"] is None
    desc = client.get("/v1/secrets", params={"order": "desc", "limit": 1}).json()
    assert desc["items"][0]["name"] == "k4"
    bad = client.get("/v1/secrets", params={"sort": "value"})
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request")


def test_compare_and_set(client: TestClient) -> None:
    assert (
        client.put("/v1/secrets/a", json={"value": "1", "expected_version": 0}).status_code == 201
    )
    r = client.put("/v1/secrets/a", json={"value": "2", "expected_version": 0})
    assert (r.status_code, r.json()["code"]) == (409, "conflict")
    assert (
        client.put("/v1/secrets/a", json={"value": "2", "expected_version": 1}).status_code == 200
    )


def test_reveal_is_audited(client: TestClient, opened: Home) -> None:
    client.put("/v1/secrets/api-key", json={"value": SENTINEL})
    r = client.post("/v1/secrets/api-key/reveal", json={})
    assert r.status_code == 200
    assert r.json()["value"] == SENTINEL
    entries = opened.vault.audit_entries(name="api-key")
    # A value shown to a person is audited as `reveal`, distinct from a program's `get`.
    assert any(e.actor == "api" and e.operation == "reveal" for e in entries)
    # GET never reveals: there is no such route.
    assert client.get("/v1/secrets/api-key/reveal").status_code == 405


def test_reveal_can_be_disabled(opened: Home, token: str) -> None:
    cfg = dataclasses.replace(
        opened.config, vault=dataclasses.replace(opened.config.vault, allow_reveal=False)
    )
    home = Home(config=cfg, db=opened.db)
    app: FastAPI = create_app(home, port=PORT, token=token, dashboard=False)
    with TestClient(app, base_url=BASE, headers={"Authorization": f"Bearer {token}"}) as c:
        c.put("/v1/secrets/k", json={"value": SENTINEL})
        r = c.post("/v1/secrets/k/reveal", json={})
        assert (r.status_code, r.json()["code"]) == (403, "forbidden")
        assert SENTINEL not in r.text
    home.vault.close()


def test_rule_violation_and_bad_values_do_not_echo_the_value(client: TestClient) -> None:
    r = client.put("/v1/secrets/x", json={"value": ""})
    assert r.status_code == 422
    r = client.put("/v1/secrets/x", json={"value": 12345, "note": SENTINEL})
    assert r.status_code == 422
    assert SENTINEL not in r.text
    r = client.put("/v1/secrets/x", json={"value": SENTINEL, "scope": "a/b"})
    assert r.status_code == 422
    assert SENTINEL not in r.text


@pytest.mark.parametrize(
    "path",
    [
        "/v1/secrets/..%2F..%2Fetc%2Fpasswd",
        "/v1/secrets/%2E%2E",
        "/v1/secrets/.hidden",
        "/v1/secrets/a%00b",
        "/v1/secrets/a%5Cb",
        "/v1/secrets/" + "a" * 300,
    ],
)
def test_path_traversal_in_names_reaches_no_vault_call(
    client: TestClient, opened: Home, path: str
) -> None:
    r = client.put(path, json={"value": SENTINEL})
    assert r.status_code in {404, 422}, r.text
    assert SENTINEL not in r.text
    assert opened.vault.list() == []
    assert not list(opened.config.home.rglob("passwd"))


def test_changes_through_the_api_are_in_the_activity_feed(client: TestClient, opened: Home) -> None:
    client.put("/v1/secrets/FEED_KEY", json={"value": SENTINEL})
    client.put("/v1/secrets/FEED_KEY", json={"value": SENTINEL + "x"})
    client.delete("/v1/secrets/FEED_KEY")
    rows = opened.activity.query(actor="api", limit=10).items
    assert [(a.action, a.subject) for a in reversed(rows)] == [
        ("secret.set", "global/FEED_KEY"),
        ("secret.set", "global/FEED_KEY"),
        ("secret.deleted", "global/FEED_KEY"),
    ]
    assert [a.details for a in reversed(rows)][:2] == [{"version": 1}, {"version": 2}]
    feed = client.get("/v1/activity", params={"actor": "api"})
    assert feed.status_code == 200
    assert SENTINEL not in feed.text


def test_reconcile_route_reports_names_only(client: TestClient, opened: Home) -> None:
    client.put("/v1/secrets/KEPT", json={"value": SENTINEL})
    r = client.post("/v1/secrets/reconcile", json={})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["backend"] == opened.vault.backend_info()["backend"]
    assert (body["orphans"], body["missing"], body["fixed"]) == ([], [], False)
    assert SENTINEL not in r.text
    r = client.post("/v1/secrets/reconcile", json={"fix": True})
    assert r.status_code == 200
    assert r.json()["changes"] == []
