"""The dashboard's sign-in flow in-process: login codes, the session cookie, CSRF, headers.

Runs the real app (every middleware) over ASGI; the browser suite covers the same through
Chromium. These tests pin the security edges a browser test cannot reach cheaply.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bastion.api import create_app
from bastion.api.dashboard import login_url, mint_login_code
from bastion.api.dashboard.sessions import LoginCodes, Sessions, cookie_name
from bastion.app import Home
from bastion.config import Config
from bastion.runfiles import TOKEN_FILE, read_token

PORT = 48200
BASE = f"http://127.0.0.1:{PORT}"
ORIGIN = BASE


@pytest.fixture
def opened(home: Config) -> Iterator[Home]:
    h = Home.init(home)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def token(opened: Home) -> str:
    return read_token(opened.config.run_dir / TOKEN_FILE)


@pytest.fixture
def app(opened: Home) -> FastAPI:
    return create_app(opened, port=PORT)


@pytest.fixture
def browser(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as c:
        yield c


def sign_in(client: TestClient, token: str) -> str:
    response = client.get(f"/login?t={mint_login_code(token)}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{cookie_name(PORT)}=")
    lowered = cookie.lower()
    assert "httponly" in lowered
    assert "samesite=strict" in lowered
    assert "path=/" in lowered
    session = client.get("/dashboard/session")
    assert session.status_code == 200
    csrf: str = session.json()["csrf_token"]
    return csrf


def test_page_without_session_says_how_to_sign_in(browser: TestClient, token: str) -> None:
    response = browser.get("/")
    assert response.status_code == 401
    assert "bastion dashboard" in response.text
    assert 'id="services"' not in response.text
    assert token not in response.text
    # No data route answers without a cookie or token.
    assert browser.get("/v1/status").status_code == 401
    assert browser.get("/dashboard/session").status_code == 401


def test_login_code_becomes_a_session_once(browser: TestClient, token: str) -> None:
    code = mint_login_code(token)
    first = browser.get(f"/login?t={code}", follow_redirects=False)
    assert first.status_code == 303
    page = browser.get("/")
    assert page.status_code == 200
    assert 'id="services"' in page.text
    csp = page.headers["content-security-policy"]
    assert "connect-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert browser.get("/v1/status").status_code == 200
    # The same code again: refused, and no new cookie.
    browser.cookies.clear()
    again = browser.get(f"/login?t={code}", follow_redirects=False)
    assert again.status_code == 401
    assert "set-cookie" not in again.headers
    assert browser.get("/").status_code == 401


@pytest.mark.parametrize(
    "code",
    ["", "garbage", "a.b", "x" * 199, "AAAA.AAAA"],
)
def test_bad_login_codes_are_refused(browser: TestClient, code: str) -> None:
    response = browser.get("/login", params={"t": code}, follow_redirects=False)
    assert response.status_code == 401
    assert "set-cookie" not in response.headers


def test_code_from_another_token_or_expired_is_refused(token: str) -> None:
    codes = LoginCodes(token)
    assert not codes.redeem(mint_login_code("another-token-" + "x" * 40))
    assert not codes.redeem(mint_login_code(token, now=time.time() - 600))
    # A code claiming an expiry far in the future was not minted with our TTL.
    assert not codes.redeem(mint_login_code(token, ttl_s=3600))
    good = mint_login_code(token)
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    assert not codes.redeem(tampered)
    assert codes.redeem(good)
    assert not codes.redeem(good)


def test_mutations_need_csrf_header_and_own_origin(browser: TestClient, token: str) -> None:
    csrf = sign_in(browser, token)
    json_headers = {"content-type": "application/json"}
    # No CSRF header, no Origin: refused.
    assert browser.post("/v1/dashboard/login", json={}).status_code == 401
    # CSRF header but no Origin: refused (a same-origin fetch always sends one for POST).
    assert (
        browser.post(
            "/v1/dashboard/login", json={}, headers={**json_headers, "x-bastion-csrf": csrf}
        ).status_code
        == 401
    )
    # Wrong CSRF token.
    wrong = {**json_headers, "x-bastion-csrf": "nope", "origin": ORIGIN}
    assert browser.post("/v1/dashboard/login", json={}, headers=wrong).status_code == 401
    # A foreign origin is refused by the middleware before any session check.
    foreign = {**json_headers, "x-bastion-csrf": csrf, "origin": "http://evil.example"}
    assert browser.post("/v1/dashboard/login", json={}, headers=foreign).status_code == 403
    # A cross-site fetch (fetch metadata) with everything else right: refused.
    cross = {
        **json_headers,
        "x-bastion-csrf": csrf,
        "origin": ORIGIN,
        "sec-fetch-site": "cross-site",
    }
    assert browser.post("/v1/dashboard/login", json={}, headers=cross).status_code == 401
    # The page's own request: accepted.
    ok = {**json_headers, "x-bastion-csrf": csrf, "origin": ORIGIN, "sec-fetch-site": "same-origin"}
    response = browser.post("/v1/dashboard/login", json={}, headers=ok)
    assert response.status_code == 200
    assert response.json()["url"].startswith(f"http://127.0.0.1:{PORT}/login?t=")


def test_session_is_bound_to_its_host_and_ends_at_logout(
    app: FastAPI, browser: TestClient, token: str
) -> None:
    csrf = sign_in(browser, token)
    session_id = browser.cookies.get(cookie_name(PORT))
    assert session_id
    with TestClient(
        app, base_url=f"http://localhost:{PORT}", raise_server_exceptions=False
    ) as other_host:
        other_host.cookies.set(cookie_name(PORT), session_id)
        assert other_host.get("/v1/status").status_code == 401
    headers = {"content-type": "application/json", "x-bastion-csrf": csrf, "origin": ORIGIN}
    assert browser.post("/logout", json={}, headers=headers).status_code == 204
    browser.cookies.set(cookie_name(PORT), session_id)
    assert browser.get("/v1/status").status_code == 401
    assert browser.get("/").status_code == 401


def test_two_cookies_of_our_name_are_refused(token: str) -> None:
    sessions = Sessions(PORT, own_origins={ORIGIN})
    s = sessions.create(f"127.0.0.1:{PORT}")
    name = cookie_name(PORT)
    scope = {
        "method": "GET",
        "headers": [
            (b"host", f"127.0.0.1:{PORT}".encode()),
            (b"cookie", f"{name}={s.id}; {name}=planted".encode()),
        ],
    }
    assert not sessions.authorize(scope)
    scope["headers"] = [*scope["headers"][:1], (b"cookie", f"{name}={s.id}".encode())]
    assert sessions.authorize(scope)


def test_sessions_expire_when_idle() -> None:
    now = [1000.0]
    sessions = Sessions(PORT, own_origins={ORIGIN}, clock=lambda: now[0], ttl_s=60)
    s = sessions.create(f"127.0.0.1:{PORT}")
    assert sessions.get(s.id, f"127.0.0.1:{PORT}") is not None
    now[0] += 59
    assert sessions.get(s.id, f"127.0.0.1:{PORT}") is not None  # touched: idle clock restarts
    now[0] += 61
    assert sessions.get(s.id, f"127.0.0.1:{PORT}") is None


def test_assets_are_a_fixed_table(browser: TestClient, token: str) -> None:
    js = browser.get("/dashboard/static/app.js")
    assert js.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")
    assert browser.get("/dashboard/static/app.css").status_code == 200
    for bad in ("index.html", "..%2F..%2Fsessions.py", "nope.js"):
        assert browser.get(f"/dashboard/static/{bad}").status_code == 404
    # The bundle never names a host other than its own origin (every module app.js imports).
    modules = ("app.js", "charts.js", "dom.js", "logs.js", "app.css")
    for name in modules:
        text = browser.get(f"/dashboard/static/{name}").text
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text
        assert token not in text
    imported = set(re.findall(r'from "\./([a-z]+\.js)"', js.text))
    assert imported
    assert imported <= set(modules)


def test_login_url_helper(token: str) -> None:
    url = login_url(PORT, token)
    assert url.startswith(f"http://127.0.0.1:{PORT}/login?t=")
    assert token not in url
    assert LoginCodes(token).redeem(url.split("t=", 1)[1])


def test_dashboard_command_without_a_daemon_says_how_to_start_one(home: Config) -> None:
    from click.testing import CliRunner

    from bastion.cli import cli

    Home.init(home).close()
    result = CliRunner().invoke(cli, ["--home", str(home.home), "dashboard"])
    assert result.exit_code == 69
    assert "no bastion daemon is running" in result.output
    assert "bastion serve" in result.output
    as_json = CliRunner().invoke(cli, ["--home", str(home.home), "dashboard", "--json"])
    assert as_json.exit_code == 69
    assert '"daemon_unreachable"' in as_json.output


@pytest.mark.parametrize("site", ["same-site", "cross-site"])
def test_reads_from_another_site_or_port_are_refused(
    browser: TestClient, token: str, site: str
) -> None:
    # Cookies are not port-scoped: a page on 127.0.0.1:<another port> is "same-site" and its
    # <img>/<script> requests would carry the cookie without an Origin. Fetch metadata says so.
    sign_in(browser, token)
    assert browser.get("/v1/status", headers={"sec-fetch-site": "same-origin"}).status_code == 200
    assert browser.get("/v1/status", headers={"sec-fetch-site": site}).status_code == 401
    other_port = {"origin": "http://127.0.0.1:8080", "sec-fetch-site": "same-site"}
    assert browser.get("/v1/status", headers=other_port).status_code == 403


def test_back_up_now_is_a_job_with_progress_one_at_a_time(
    app: FastAPI, token: str, opened: Home
) -> None:
    from bastion.store.backup import list_backups
    from tests.helpers import wait_until

    with TestClient(app, base_url=BASE, headers={"Authorization": f"Bearer {token}"}) as client:
        assert client.get("/v1/dashboard/backups/job").json()["state"] == "idle"
        started = client.post("/v1/dashboard/backups", json={})
        assert started.status_code == 202
        assert started.json()["state"] in {"running", "done"}
        job = wait_until(
            lambda: (
                (j := client.get("/v1/dashboard/backups/job").json())["state"] != "running" and j
            ),
            timeout=60,
            what="the backup job to finish",
        )
        assert job["state"] == "done", job
        assert job["backup"]["verified"] is True
        assert job["total_pages"] > 0
        assert job["done_pages"] == job["total_pages"]
        (info,) = list_backups(opened.config.backups_dir, deep=True)
        assert info.path.name == job["backup"]["name"]
        assert info.verified
        # Listed, and recorded in the activity feed as the API's doing (bearer token).
        assert [b["name"] for b in client.get("/v1/dashboard/backups").json()] == [info.path.name]
        feed = client.get("/v1/activity", params={"action": "db.backup"}).json()["items"]
        assert [(a["actor"], a["subject"]) for a in feed] == [("api", info.path.name)]


def test_a_second_backup_while_one_runs_is_refused(app: FastAPI, token: str) -> None:
    jobs = app.state.dashboard.backups
    jobs.state = "running"  # as if a backup were under way
    with TestClient(app, base_url=BASE, headers={"Authorization": f"Bearer {token}"}) as client:
        refused = client.post("/v1/dashboard/backups", json={})
    assert refused.status_code == 409
    assert refused.json()["code"] == "conflict"
    assert "already running" in refused.json()["message"]
