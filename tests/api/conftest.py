"""Fixtures for the API tests: a real home on disk, the app in-process, an authorized client.

The in-process client talks ASGI directly (no socket) but goes through every middleware; the
Host it sends is ``127.0.0.1:PORT``, the port the app was built for.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bastion.api import create_app
from bastion.app import Home
from bastion.config import Config, load_config
from bastion.runfiles import TOKEN_FILE, read_token

from ..helpers import file_vault_env, wait_until

PORT = 48123
BASE = f"http://127.0.0.1:{PORT}"


@pytest.fixture
def api_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """A fresh home whose vault is the encrypted file, keyed from the environment.

    (The keychain backend needs a D-Bus session; the vault's own suite runs it there. Here
    the routes are under test, so the backend that runs everywhere is used.)
    """
    return load_config(tmp_path / "home", env=file_vault_env(monkeypatch))


@pytest.fixture
def opened(api_config: Config) -> Iterator[Home]:
    h = Home.init(api_config)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def token(opened: Home) -> str:
    return read_token(opened.config.run_dir / TOKEN_FILE)


def authorized(app: FastAPI, token: str) -> TestClient:
    """A client of ``app`` with the right Host and the token (use it as a context manager:
    entering runs the app's lifespan). A server error is answered, not raised, as a real
    client sees it."""
    return TestClient(
        app,
        base_url=BASE,
        headers={"Authorization": f"Bearer {token}"},
        raise_server_exceptions=False,
    )


@pytest.fixture
def app(opened: Home) -> FastAPI:
    return create_app(opened, port=PORT, dashboard=False)


@pytest.fixture
def full_app(opened: Home) -> FastAPI:
    """The app with the dashboard's routes too (the ``app`` fixture leaves them out)."""
    return create_app(opened, port=PORT, dashboard=True)


@pytest.fixture
def full(full_app: FastAPI, token: str) -> Iterator[TestClient]:
    """A client of ``full_app`` with the right Host and the token."""
    with authorized(full_app, token) as c:
        yield c


@pytest.fixture
def anon(app: FastAPI) -> Iterator[TestClient]:
    """A client with the right Host and no token."""
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def client(app: FastAPI, token: str) -> Iterator[TestClient]:
    """A client with the right Host and the token."""
    with authorized(app, token) as c:
        yield c


class LiveServer:
    """The app on a real loopback socket, served by uvicorn in a thread (for SSE, schemathesis)."""

    def __init__(self, home: Home, token: str, *, supervise: bool = False) -> None:
        import uvicorn

        from bastion.api.server import bind_sockets, http_protocol

        self.sockets = bind_sockets("127.0.0.1", 0)
        self.port = int(self.sockets[0].getsockname()[1])
        self.token = token
        self.app = create_app(
            home, port=self.port, token=token, dashboard=False, supervise=supervise
        )
        config = uvicorn.Config(
            self.app,
            http=http_protocol(home.config),
            lifespan="on" if supervise else "off",
            access_log=False,
            log_config=None,
            loop="asyncio",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": self.sockets}, daemon=True
        )
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=30, what="uvicorn to start")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.app.state.daemon.stopping = True  # ends SSE streams
        self.server.should_exit = True
        self.thread.join(timeout=30)
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def live(opened: Home, token: str) -> Iterator[LiveServer]:
    server = LiveServer(opened, token)
    try:
        yield server
    finally:
        server.stop()
