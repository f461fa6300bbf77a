"""What the dashboard reads and records, in-process over the real app (every middleware).

- who did it: a change through the signed-in page is the ``dashboard``'s in the activity feed
  and the vault's audit log, the same change with the bearer token is the ``api``'s, whatever
  the route (secrets, services, checks, backups);
- whether the vault can store values at all (``/v1/secrets/status``: ``available``/``problem``)
  before anyone types one;
- the icon at ``/favicon.ico``;
- the size samples behind the Database view's chart.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bastion.api import create_app
from bastion.api.dashboard import mint_login_code
from bastion.app import Home
from bastion.config import Config, load_config
from bastion.runfiles import TOKEN_FILE, read_token
from tests.helpers import file_vault_env, wait_until

PORT = 48211
BASE = f"http://127.0.0.1:{PORT}"


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    return load_config(tmp_path / "home", env=file_vault_env(monkeypatch))


@pytest.fixture
def opened(cfg: Config) -> Iterator[Home]:
    h = Home.init(cfg)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def token(opened: Home) -> str:
    return read_token(opened.config.run_dir / TOKEN_FILE)


def _page(app: FastAPI, token: str) -> TestClient:
    """A client that is the signed-in page: session cookie, CSRF header, own Origin."""
    client = TestClient(app, base_url=BASE, raise_server_exceptions=False)
    assert client.get(f"/login?t={mint_login_code(token)}", follow_redirects=False).is_redirect
    csrf = client.get("/dashboard/session").json()["csrf_token"]
    client.headers.update({"x-bastion-csrf": csrf, "origin": BASE})
    return client


def _api(app: FastAPI, token: str) -> TestClient:
    return TestClient(
        app,
        base_url=BASE,
        headers={"Authorization": f"Bearer {token}"},
        raise_server_exceptions=False,
    )


def _actors(home: Home, action: str) -> list[str]:
    return [a.actor for a in home.activity.query(action=action, limit=50).items]


def test_secret_changes_are_attributed_to_who_made_them(opened: Home, token: str) -> None:
    app = create_app(opened, port=PORT)
    with _page(app, token) as page, _api(app, token) as api:
        assert page.put("/v1/secrets/FROM_PAGE", json={"value": "v1"}).status_code == 201
        assert api.put("/v1/secrets/FROM_API", json={"value": "v2"}).status_code == 201
        assert page.delete("/v1/secrets/FROM_API").status_code == 200
    feed = {(a.actor, a.subject) for a in opened.activity.query(limit=50).items}
    assert ("dashboard", "global/FROM_PAGE") in feed
    assert ("api", "global/FROM_API") in feed
    assert _actors(opened, "secret.deleted") == ["dashboard"]
    # The vault's own audit log names the same actor as the feed.
    audit = {(e.actor, e.name, e.operation) for e in opened.vault.audit_entries(limit=50)}
    assert ("dashboard", "FROM_PAGE", "set") in audit
    assert ("api", "FROM_API", "set") in audit
    assert ("dashboard", "FROM_API", "delete") in audit


def test_a_check_and_a_backup_from_the_page_are_in_who_did_what(opened: Home, token: str) -> None:
    app = create_app(opened, port=PORT)
    with _page(app, token) as page, _api(app, token) as api:
        r = page.post("/v1/dashboard/checks", json={"kind": "quick"})
        assert (r.status_code, r.json()["ok"]) == (200, True)
        assert api.post("/v1/dashboard/checks", json={"kind": "quick"}).status_code == 200
        assert page.post("/v1/dashboard/backups", json={}).status_code == 202
        wait_until(
            lambda: page.get("/v1/dashboard/backups/job").json()["state"] == "done",
            timeout=60,
            what="the backup job",
        )
    assert sorted(_actors(opened, "db.check")) == ["api", "dashboard"]
    (check,) = opened.activity.query(action="db.check", actor="dashboard", limit=1).items
    assert check.subject == opened.db.name
    assert check.details == {"kind": "quick", "ok": True, "problems": 0}
    assert _actors(opened, "db.backup") == ["dashboard"]
    # The check's event is still there for the page's "last check" line.
    assert opened.events.query(kind="db.checked", limit=10).items


@pytest.mark.posix
@pytest.mark.slow
def test_service_actions_from_the_page_are_the_dashboards(opened: Home, token: str) -> None:
    from bastion.demo import seed_services

    seed_services(opened.config, python=sys.executable, worker_interval=0.2)
    app = create_app(opened, port=PORT, token=token, supervise=True)
    # One client (one lifespan, one supervisor): the page's requests carry its cookie and
    # CSRF header, the app's its bearer token.
    with _page(app, token) as client:
        bearer = {"Authorization": f"Bearer {token}"}

        def state() -> str:
            return str(client.get("/v1/services/demo-worker").json()["state"])

        wait_until(lambda: state() == "running", timeout=30, what="worker running")
        assert client.post("/v1/services/demo-worker/stop", json={}).status_code == 200
        r = client.post("/v1/services/demo-worker/start", json={}, headers=bearer)
        assert r.status_code == 200
    assert _actors(opened, "service.stop") == ["dashboard"]
    assert _actors(opened, "service.start") == ["api"]


def test_secrets_status_says_when_the_keychain_is_unusable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The machine the issue describes: keychain backend configured, no D-Bus session bus.
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    cfg = load_config(tmp_path / "kc", env={"BASTION_VAULT_BACKEND": "keychain"})
    with Home.init(cfg) as home:
        token = read_token(cfg.run_dir / TOKEN_FILE)
        with _api(create_app(home, port=PORT, token=token), token) as api:
            r = api.get("/v1/secrets/status")
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["backend"] == "keychain"
            assert body["available"] is False
            problem = body["problem"]
            assert problem["code"] == "keychain_unavailable"
            # The fix is in the answer: another backend, or a session bus.
            assert 'vault.backend = "encrypted-file"' in problem["hint"]
            assert "DBUS_SESSION_BUS_ADDRESS" in problem["hint"]
            # Listing still works (the index alone), and the save it predicts does fail.
            assert api.get("/v1/secrets").status_code == 200
            put = api.put("/v1/secrets/K", json={"value": "v"})
            assert (put.status_code, put.json()["code"]) == (503, "keychain_unavailable")


def test_secrets_status_says_a_usable_backend_is_available(opened: Home, token: str) -> None:
    with _api(create_app(opened, port=PORT), token) as api:
        body = api.get("/v1/secrets/status").json()
    assert (body["backend"], body["available"], body["problem"]) == ("encrypted-file", True, None)


def test_secrets_status_names_a_missing_file_key(
    opened: Home, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Same class of fault, the other backend: its key is not in the environment.
    monkeypatch.delenv("BASTION_VAULT_KEY")
    with _api(create_app(opened, port=PORT), token) as api:
        body = api.get("/v1/secrets/status").json()
    assert body["available"] is False
    assert "BASTION_VAULT_KEY" in body["problem"]["message"] + body["problem"]["hint"]


def test_favicon_is_served_without_a_session(opened: Home, token: str) -> None:
    app = create_app(opened, port=PORT)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as anon:
        r = anon.get("/favicon.ico")
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/svg+xml"
        assert r.content.startswith(b"<svg")
        assert anon.get("/dashboard/static/favicon.svg").content == r.content
    with _page(app, token) as page:
        assert 'rel="icon" href="/dashboard/static/favicon.svg"' in page.get("/").text


def test_size_samples_route_returns_what_the_scheduler_recorded(opened: Home, token: str) -> None:
    from bastion.api.server import build_scheduler

    build_scheduler(opened).run_now("db-sample")
    opened.settings.set("grow", "x" * 50_000)
    build_scheduler(opened).run_now("db-sample")
    with _page(create_app(opened, port=PORT), token) as page:
        samples = page.get("/v1/dashboard/db/samples").json()
        assert len(samples) == 2
        # Times as every response carries them: RFC 3339 UTC strings.
        assert samples[0]["ts"].endswith("Z")
        assert samples[0]["ts"] <= samples[1]["ts"]
        assert samples[1]["wal_bytes"] > 0
        later = page.get("/v1/dashboard/db/samples", params={"since": samples[1]["ts"]}).json()
        assert later == samples[1:]
        assert page.get("/v1/dashboard/db/samples", params={"since": "x"}).status_code == 422
