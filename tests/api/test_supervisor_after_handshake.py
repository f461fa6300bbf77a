"""The supervisor started after the daemon's handshake (``create_app(supervise=
"after-listening")``, what ``bastion serve`` passes; issue 22 §7), in-process over real
children (the shipped demo services): until the server says it listens, nothing is started and
what needs the supervisor waits for it; a start that fails is said -- an event, the error on
the service routes and in the status -- while the rest of the API keeps answering."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from bastion.api import create_app
from bastion.api.state import DaemonState
from bastion.app import Home
from bastion.demo import seed_services
from bastion.errors import StoreIOError

from .conftest import PORT, authorized

pytestmark = pytest.mark.posix


@pytest.fixture
def waiting(opened: Home, token: str) -> Iterator[tuple[TestClient, DaemonState]]:
    """An app whose supervisor starts after listening, its lifespan entered, not listening."""
    seed_services(opened.config, python=sys.executable, worker_interval=0.2)
    app = create_app(opened, port=PORT, token=token, dashboard=False, supervise="after-listening")
    with authorized(app, token) as client:
        yield client, app.state.daemon


def _in_thread(client: TestClient, path: str) -> tuple[threading.Thread, list[httpx.Response]]:
    answers: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: answers.append(client.get(path)), daemon=True)
    thread.start()
    return thread, answers


def _listening(client: TestClient, state: DaemonState) -> None:
    """What ``bastion serve`` does once its handshake is out, on the server's loop."""
    assert state.listening is not None
    client.portal.call(state.listening.set)  # type: ignore[union-attr]


def test_what_needs_the_supervisor_waits_for_its_start(
    waiting: tuple[TestClient, DaemonState],
) -> None:
    client, state = waiting
    # The lifespan has run, and started nothing: the handshake is not out yet.
    assert state.supervisor is None
    assert client.get("/v1/settings").status_code == 200  # the rest of the API answers

    services, listed = _in_thread(client, "/v1/services")
    status, summary = _in_thread(client, "/v1/status")
    # Both wait for the start, which waits for the server to listen: not answered while it
    # has not (a join that ends early would mean an answer without the supervisor).
    services.join(timeout=1)
    status.join(timeout=1)
    assert services.is_alive()
    assert status.is_alive()
    assert listed == []
    assert summary == []

    _listening(client, state)
    services.join(timeout=60)
    status.join(timeout=60)
    assert [s["name"] for s in listed[0].json()["items"]] == ["demo-echo", "demo-worker"]
    counted = summary[0].json()["services"]
    assert counted["supervised"] is True
    assert counted["total"] == 2
    assert state.supervisor is not None


def test_a_start_that_fails_is_said_and_the_rest_answers(
    waiting: tuple[TestClient, DaemonState], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, state = waiting

    def refuse(*_args: Any) -> Any:
        raise StoreIOError("the disk refused the supervisor's journal", hint="Free some space.")

    monkeypatch.setattr("bastion.api.supervision.build_supervisor", refuse)
    _listening(client, state)

    answer = client.get("/v1/services")
    assert answer.status_code == 503
    assert answer.json()["code"] == "store_io"
    assert "refused the supervisor's journal" in answer.json()["message"]
    assert client.post("/v1/services/demo-worker/start", json={}).json()["code"] == "store_io"

    status = client.get("/v1/status")
    assert status.status_code == 200
    assert status.json()["services"]["supervised"] is False
    assert status.json()["services"]["error"]["code"] == "store_io"

    events = client.get("/v1/events", params={"limit": 50}).json()["items"]
    failed = [e for e in events if e["kind"] == "supervisor.failed"]
    assert len(failed) == 1
    assert failed[0]["data"]["error"]["code"] == "store_io"
    # The vault an app needs from the daemon does not depend on its services.
    assert client.get("/v1/secrets").status_code == 200


def test_an_app_without_a_handshake_starts_it_in_its_lifespan(opened: Home, token: str) -> None:
    # supervise=True (an app serving create_app itself): the lifespan's start is the
    # supervisor's, as before; nothing waits for a listening that never comes.
    seed_services(opened.config, python=sys.executable, worker_interval=0.2)
    app = create_app(opened, port=PORT, token=token, dashboard=False, supervise=True)
    with authorized(app, token) as client:
        state: DaemonState = app.state.daemon
        assert state.supervisor is not None
        assert state.listening is None
        assert client.get("/v1/services").json()["total"] == 2
