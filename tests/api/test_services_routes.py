"""Services routes over a real supervisor running real children (the shipped demo services)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from bastion.api import create_app
from bastion.app import Home
from bastion.demo import seed_services
from bastion.runfiles import pid_alive

from ..helpers import wait_until
from .conftest import PORT, authorized

pytestmark = pytest.mark.posix


@pytest.fixture
def supervised(opened: Home, token: str) -> Iterator[TestClient]:
    seed_services(opened.config, python=sys.executable, worker_interval=0.2)
    app = create_app(opened, port=PORT, token=token, dashboard=False, supervise=True)
    # Entering runs the lifespan: the supervisor opens and auto-starts.
    with authorized(app, token) as client:
        yield client


def _state(client: TestClient, name: str) -> str:
    return str(client.get(f"/v1/services/{name}").json()["state"])


def test_autostart_list_stop_start_restart(supervised: TestClient) -> None:
    c = supervised
    wait_until(lambda: _state(c, "demo-worker") == "running", timeout=30, what="worker running")
    listing = c.get("/v1/services").json()
    assert [s["name"] for s in listing["items"]] == ["demo-echo", "demo-worker"]
    assert listing["total"] == 2

    pid = c.get("/v1/services/demo-worker").json()["pid"]
    assert pid
    assert pid_alive(pid)
    stopped = c.post("/v1/services/demo-worker/stop", json={})
    assert stopped.status_code == 200
    assert stopped.json()["state"] == "stopped"
    wait_until(lambda: not pid_alive(pid), timeout=30, what="the child to be gone")

    started = c.post("/v1/services/demo-worker/start", json={}).json()
    assert started["state"] in {"starting", "running"}
    wait_until(lambda: _state(c, "demo-worker") == "running", timeout=30, what="running again")
    new_pid = c.get("/v1/services/demo-worker").json()["pid"]
    restarted = c.post("/v1/services/demo-worker/restart", json={}).json()
    assert restarted["state"] in {"starting", "running"}
    wait_until(lambda: not pid_alive(new_pid), timeout=30, what="the old child to be gone")

    kinds = c.get("/v1/services/demo-worker/events", params={"limit": 50}).json()["items"]
    moves = [(e["data"] or {}).get("to") for e in kinds]
    assert "stopped" in moves
    assert "running" in moves

    status = c.get("/v1/status").json()["services"]
    assert status["supervised"] is True
    assert status["total"] == 2

    feed = c.get("/v1/activity", params={"actor": "api", "order": "asc"}).json()["items"]
    assert [(a["action"], a["subject"]) for a in feed if a["subject"] == "demo-worker"] == [
        ("service.stop", "demo-worker"),
        ("service.start", "demo-worker"),
        ("service.restart", "demo-worker"),
    ]


def test_service_logs_are_captured_and_queryable(supervised: TestClient) -> None:
    c = supervised

    def ticks() -> list[str]:
        items = c.get("/v1/services/demo-worker/logs", params={"text": "tick"}).json()["items"]
        return [i["message"] for i in items]

    found = wait_until(lambda: len(ticks()) >= 2 and ticks(), timeout=30, what="worker ticks")
    assert all(m.startswith("worker: tick") for m in found)


def test_unknown_and_malformed_service_names(supervised: TestClient) -> None:
    r = supervised.get("/v1/services/nope")
    assert (r.status_code, r.json()["code"]) == (404, "service_not_found")
    r = supervised.post("/v1/services/nope/start", json={})
    assert r.status_code == 404
    r = supervised.post("/v1/services/demo-worker/explode", json={})
    assert r.status_code == 422
    r = supervised.get("/v1/services/..%2F..%2Fetc")
    assert r.status_code in {404, 422}


def test_without_a_supervisor_control_answers_503(client: TestClient) -> None:
    r = client.post("/v1/services/demo-worker/start", json={})
    assert (r.status_code, r.json()["code"]) == (503, "daemon_unreachable")
