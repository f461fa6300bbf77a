"""GET /metrics scraped from the app on a real loopback socket while a real supervisor runs a
crash-looping child: the figures move as the recorded events did."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from bastion.app import Home
from bastion.config import load_config

from ..helpers import file_vault_env, wait_until
from .conftest import LiveServer

pytestmark = pytest.mark.posix

CRASHY = f"""argv = ["{sys.executable}", "-c", "print('boom'); raise SystemExit(3)"]

[restart]
policy = "on-failure"
max_restarts = 2
window_s = 300
backoff_initial_s = 0.02
backoff_max_s = 0.05
jitter = 0.0

[breaker]
open_timeout_s = 0.2
"""

STEADY = f"""argv = ["{sys.executable}", "-c", "import time; time.sleep(3600)"]

[health.liveness]
kind = "exec"
command = ["/bin/sh", "-c", "exit 0"]
interval_s = 0.05
"""


def scrape(server: LiveServer, **headers: str) -> httpx.Response:
    return httpx.get(
        f"{server.base}/metrics",
        headers={"Authorization": f"Bearer {server.token}", **headers},
        timeout=30,
    )


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found[(name, frozenset(labels.items()))]


def transitions(home: Home, service: str) -> Counter[tuple[str, str]]:
    rows = home.db.query(
        "SELECT json_extract(data, '$.from'), json_extract(data, '$.to') FROM events"
        " WHERE kind = 'service.transition' AND subject = ?",
        (service,),
    )
    return Counter((r[0], r[1]) for r in rows)


@pytest.fixture
def supervised(opened: Home, token: str) -> Iterator[LiveServer]:
    services = opened.config.services_dir
    services.mkdir(parents=True, exist_ok=True)
    (services / "crashy.toml").write_text(CRASHY)
    (services / "steady.toml").write_text(STEADY)
    server = LiveServer(opened, token, supervise=True)
    try:
        yield server
    finally:
        server.stop()


def test_scrape_while_a_service_crash_loops_matches_the_recorded_events(
    opened: Home, supervised: LiveServer
) -> None:
    server = supervised
    # The breaker trips at least twice (each trip: 3 fast crashes, then a half-open trial).
    wait_until(
        lambda: transitions(opened, "crashy")[("half_open", "exited")] >= 2,
        timeout=60,
        what="two half-open trials",
    )
    for _ in range(3):
        assert httpx.get(f"{server.base}/v1/status", headers=_auth(server), timeout=30).is_success
    assert httpx.get(f"{server.base}/v1/nope", headers=_auth(server), timeout=30).status_code == 404
    stopped = httpx.post(
        f"{server.base}/v1/services/crashy/stop", headers=_auth(server), json={}, timeout=30
    )
    assert stopped.is_success, stopped.text
    wait_until(
        lambda: _state(server, "crashy") in {"stopped", "open", "failed"},
        timeout=30,
        what="crashy stopped",
    )

    # The capture stores what it read in batches, behind: once crashy is stopped, wait until
    # every line read is a stored row, then take the scrape the assertions below read.
    settling_scrapes = 0

    def lines_settled() -> bool:
        nonlocal settling_scrapes
        settling_scrapes += 1
        now = samples(scrape(server).text)
        read = value(now, "bastion_service_log_lines_total", service="crashy", outcome="read")
        stored = value(now, "bastion_service_log_lines_total", service="crashy", outcome="stored")
        rows = opened.db.scalar(
            "SELECT count(*) FROM logs WHERE source = 'crashy' AND message = 'boom'"
        )
        return bool(read == stored == rows)

    wait_until(lines_settled, timeout=30, what="every line read to be stored")
    response = scrape(server)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(response.text)

    # Every transition counted is a recorded event (the journal writes them behind).
    counted = {
        (dict(k[1])["from"], dict(k[1])["to"]): v
        for k, v in found.items()
        if k[0] == "bastion_service_transitions_total" and dict(k[1])["service"] == "crashy"
    }
    wait_until(
        lambda: transitions(opened, "crashy") == Counter(counted),
        timeout=30,
        what="the journal to store every counted transition",
    )
    recorded = transitions(opened, "crashy")
    restarts = value(found, "bastion_service_restarts_total", service="crashy")
    assert restarts == recorded[("backoff", "starting")] >= 2
    trips = value(found, "bastion_service_breaker_trips_total", service="crashy")
    assert trips == sum(n for (_, to), n in recorded.items() if to == "open") >= 2
    # Each run printed one line before crashing (the last one may have been stopped first):
    # every line read was stored, and the stored ones are the rows in the logs table.
    starts = sum(n for (_, to), n in recorded.items() if to in {"starting", "half_open"})
    read = value(found, "bastion_service_log_lines_total", service="crashy", outcome="read")
    assert starts - 1 <= read <= starts
    assert (
        value(found, "bastion_service_log_lines_total", service="crashy", outcome="stored") == read
    )
    rows = opened.db.scalar(
        "SELECT count(*) FROM logs WHERE source = 'crashy' AND message = 'boom'"
    )
    assert rows == read
    assert value(found, "bastion_service_log_lines_total", service="crashy", outcome="dropped") == 0
    # A state set: exactly one state is 1 for each service.
    for name in ("crashy", "steady"):
        states = {
            dict(k[1])["state"]: v
            for k, v in found.items()
            if k[0] == "bastion_service_state" and dict(k[1])["service"] == name
        }
        assert sorted(states.values()).count(1.0) == 1
        assert states[_state(server, name)] == 1.0
    assert value(found, "bastion_service_state", service="steady", state="running") == 1.0

    # The steady child's probe runs are timed, and its process measured through psutil.
    probes = value(
        found,
        "bastion_service_probe_duration_seconds_count",
        service="steady",
        role="liveness",
        kind="exec",
    )
    assert probes >= 1
    assert value(found, "bastion_service_resident_bytes", service="steady") > 0
    assert ("bastion_service_resident_bytes", frozenset({("service", "crashy")})) not in found

    # Requests by route template and status, counted before this scrape.
    assert (
        value(found, "bastion_api_requests_total", method="GET", route="/v1/status", status="200")
        == 3
    )
    assert (
        value(found, "bastion_api_requests_total", method="GET", route="<unmatched>", status="404")
        == 1
    )
    assert (
        value(
            found,
            "bastion_api_request_duration_seconds_count",
            method="POST",
            route="/v1/services/{name}/{action}",
            status="200",
        )
        == 1
    )

    # The store counted the supervisor's writes: every commit is in the latency histogram.
    commits = value(found, "bastion_store_commits_total")
    assert commits > 0
    assert value(found, "bastion_store_commit_duration_seconds_count") == commits
    assert value(found, "bastion_store_group_commit_units_count") == commits
    assert value(found, "bastion_store_wal_bytes") >= 0
    assert value(found, "bastion_store_quarantined") == 0

    # A later scrape sees every earlier one counted (this test's, and the settling ones).
    again = samples(scrape(server).text)
    assert (
        value(again, "bastion_api_requests_total", method="GET", route="/metrics", status="200")
        == settling_scrapes + 1
    )


def test_metrics_need_the_token_and_speak_openmetrics_when_asked(live: LiveServer) -> None:
    anonymous = httpx.get(f"{live.base}/metrics", timeout=30)
    assert anonymous.status_code == 401
    wrong = httpx.get(f"{live.base}/metrics", headers={"Authorization": "Bearer x"}, timeout=30)
    assert wrong.status_code == 401
    om = scrape(live, Accept="application/openmetrics-text; version=1.0.0")
    assert om.status_code == 200
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.endswith("# EOF\n")
    names = {f.name for f in openmetrics_families(om.text)}
    assert {"bastion_store_commits", "bastion_api_requests", "bastion_service_state"} <= names
    # The two refusals are counted by reason, not as answered requests.
    found = samples(scrape(live).text)
    assert value(found, "bastion_api_rejected_total", reason="unauthorized") == 2
    assert not any(
        k[0] == "bastion_api_requests_total" and dict(k[1])["status"] == "401" for k in found
    )


def test_an_accept_header_the_exposition_cannot_read_gets_the_text_format(
    live: LiveServer,
) -> None:
    for accept in (
        "application/openmetrics-text; version=abc",
        "application/openmetrics-text; version=1.x",
    ):
        answer = scrape(live, Accept=accept)
        assert answer.status_code == 200, (accept, answer.text)
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert value(samples(answer.text), "bastion_store_commits_total") >= 0


def test_backup_age_per_database_file(opened: Home, live: LiveServer) -> None:
    opened.backup()
    found = samples(scrape(live).text)
    ages = {
        dict(k[1])["database"]: v
        for k, v in found.items()
        if k[0] == "bastion_store_backup_age_seconds"
    }
    assert "bastion" in ages
    assert ages["bastion"] >= 0


def test_metrics_off_serves_no_route_and_counts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.api.app import create_app
    from bastion.runfiles import TOKEN_FILE, read_token

    cfg = load_config(
        tmp_path / "home", env={**file_vault_env(monkeypatch), "BASTION_API_METRICS": "false"}
    )
    assert cfg.api.metrics is False
    with Home.init(cfg) as home:
        app = create_app(home, port=48123, dashboard=False)
        assert home.db.tally is None
        from fastapi.testclient import TestClient

        token = read_token(cfg.run_dir / TOKEN_FILE)
        with TestClient(app, base_url="http://127.0.0.1:48123") as c:
            r = c.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 404


def _auth(server: LiveServer) -> dict[str, Any]:
    return {"Authorization": f"Bearer {server.token}"}


def _state(server: LiveServer, name: str) -> str:
    r = httpx.get(f"{server.base}/v1/services/{name}", headers=_auth(server), timeout=30)
    return str(r.json()["state"])


def test_vault_figures_and_no_secret_in_them(live: LiveServer) -> None:
    secret = "metrics-secret-value-8c1f"
    put = httpx.put(
        f"{live.base}/v1/secrets/API_KEY", headers=_auth(live), json={"value": secret}, timeout=30
    )
    assert put.is_success, put.text
    revealed = httpx.post(
        f"{live.base}/v1/secrets/API_KEY/reveal", headers=_auth(live), json={}, timeout=30
    )
    assert revealed.is_success, revealed.text
    text = scrape(live).text
    found = samples(text)
    assert value(found, "bastion_vault_sets_total", backend="encrypted-file") == 1
    assert value(found, "bastion_vault_gets_total", backend="encrypted-file") == 1
    assert value(found, "bastion_vault_keychain_duration_seconds_count") == 0
    assert "metrics-secret-value" not in text
