"""The REST facade: bastion's error table surfaces UNIQUE as 409 ``conflict`` and 0 rows as
404 ``not_found``; filters, whitelisted sort and pagination over HTTP; secrets accepted,
never returned."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from examples.bots.api import create_app
from examples.bots.store import BotStore

SENTINEL = "sk-apiSENTINEL-0a1b2c3d4e5f"


@pytest.fixture
def client(store: BotStore) -> Iterator[TestClient]:
    _, key = store.api_keys.create("tests")
    headers = {"Authorization": f"Bearer {key.reveal()}"}
    with TestClient(create_app(store), headers=headers) as test_client:
        yield test_client


def test_every_route_needs_a_live_api_key(store: BotStore) -> None:
    meta, key = store.api_keys.create("short-lived")
    with TestClient(create_app(store)) as anonymous:
        for headers in (
            {},
            {"Authorization": "Bearer bot_not-a-key"},
            {"Authorization": "Basic x"},
        ):
            response = anonymous.get("/bots", headers=headers)
            assert response.status_code == 401
            assert response.json()["code"] == "unauthorized"
        good = {"Authorization": f"Bearer {key.reveal()}"}
        assert anonymous.get("/bots", headers=good).status_code == 200
        store.api_keys.revoke(meta.id)
        revoked = anonymous.get("/bots", headers=good)
        assert revoked.status_code == 401
        assert key.reveal() not in revoked.text


def _create(client: TestClient, slug: str, **extra: object) -> dict[str, object]:
    response = client.post("/bots", json={"slug": slug, "name": slug.title(), **extra})
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def test_create_get_update_delete(client: TestClient) -> None:
    bot = _create(client, "helper", category="support")
    assert client.get(f"/bots/{bot['id']}").json() == bot
    patched = client.patch(f"/bots/{bot['id']}", json={"status": "disabled"})
    assert patched.status_code == 200
    assert patched.json()["status"] == "disabled"
    assert client.delete(f"/bots/{bot['id']}").status_code == 204
    assert client.get(f"/bots/{bot['id']}").status_code == 404


def test_unique_violation_is_409_conflict(client: TestClient) -> None:
    _create(client, "dup")
    response = client.post("/bots", json={"slug": "dup", "name": "Again"})
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    assert set(response.json()) == {"code", "message", "hint"}


def test_zero_rows_is_404_not_found(client: TestClient) -> None:
    for response in (
        client.get("/bots/missing"),
        client.patch("/bots/missing", json={"name": "x"}),
        client.delete("/bots/missing"),
        client.get("/bots/missing/soul"),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "not_found"


def test_list_with_filter_sort_and_pagination(client: TestClient) -> None:
    for slug, status in [("a", "active"), ("b", "disabled"), ("c", "active"), ("d", "active")]:
        _create(client, slug, status=status)
    page = client.get(
        "/bots", params={"status": "active", "sort": "slug", "order": "asc", "limit": 2}
    )
    assert page.status_code == 200
    body = page.json()
    assert [b["slug"] for b in body["items"]] == ["a", "c"]
    assert body["total"] == 3
    second = client.get(
        "/bots",
        params={"status": "active", "sort": "slug", "order": "asc", "limit": 2, "offset": 2},
    ).json()
    assert [b["slug"] for b in second["items"]] == ["d"]


def test_a_sort_key_outside_the_whitelist_is_refused(client: TestClient, store: BotStore) -> None:
    _create(client, "a")
    response = client.get("/bots", params={"sort": "name; DROP TABLE bots"})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"
    assert "sort" in response.json()["message"]
    assert store.db.scalar("SELECT count(*) FROM bots") == 1


def test_soul_versions_over_http(client: TestClient) -> None:
    bot = _create(client, "soul")
    assert client.get(f"/bots/{bot['id']}/soul").status_code == 404
    first = client.put(f"/bots/{bot['id']}/soul", json={"content": "v1"}).json()
    second = client.put(f"/bots/{bot['id']}/soul", json={"content": "v2", "message": "edit"}).json()
    assert (first["version"], second["version"]) == (1, 2)
    current = client.get(f"/bots/{bot['id']}/soul").json()
    assert (current["version"], current["content"]) == (2, "v2")
    orphan = client.put("/bots/missing/soul", json={"content": "x"})
    assert orphan.status_code == 409
    assert orphan.json()["code"] == "reference_violation"


def test_secret_values_go_in_and_never_come_out(client: TestClient, store: BotStore) -> None:
    bot = _create(client, "secretive")
    responses = [
        client.put(f"/bots/{bot['id']}/secrets/API_KEY", json={"value": SENTINEL}),
        client.get(f"/bots/{bot['id']}/secrets"),
        client.put(f"/bots/{bot['id']}/secrets/bad name!", json={"value": SENTINEL}),
        client.put(f"/bots/{bot['id']}/secrets/EMPTY", json={"value": ""}),
    ]
    assert [r.status_code for r in responses[:2]] == [200, 200]
    assert responses[2].status_code in (400, 422)
    assert responses[3].status_code == 422
    assert [m["name"] for m in responses[1].json()["items"]] == ["API_KEY"]
    for response in responses:
        assert SENTINEL not in response.text
    assert store.secrets.get("API_KEY", bot_id=str(bot["id"])).reveal() == SENTINEL


def test_soul_history_rollback_and_diff_over_http(client: TestClient) -> None:
    bot = _create(client, "history")
    for content in ("one\n", "two\n"):
        assert client.put(f"/bots/{bot['id']}/soul", json={"content": content}).status_code == 200
    history = client.get(f"/bots/{bot['id']}/soul/versions").json()["items"]
    assert [(v["version"], v["intact"]) for v in history] == [(2, True), (1, True)]
    rolled = client.post(f"/bots/{bot['id']}/soul/rollback", json={"version": 1})
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["version"] == 3
    assert client.get(f"/bots/{bot['id']}/soul").json()["content"] == "one\n"
    diff = client.get(f"/bots/{bot['id']}/soul/diff", params={"from": 2, "to": 3}).json()
    assert (diff["added_lines"], diff["removed_lines"], diff["identical"]) == (1, 1, False)
    assert "-two" in diff["unified"]
    missing = client.post(f"/bots/{bot['id']}/soul/rollback", json={"version": 9})
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
