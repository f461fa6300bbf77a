"""Fixtures for the API tests: a real home on disk, the app in-process, an authorized client.

The in-process client talks ASGI directly (no socket) but goes through every middleware; the
Host it sends is ``127.0.0.1:PORT``, the port the app was built for.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bastion.api import create_app
from bastion.app import Home
from bastion.config import Config, load_config
from bastion.runfiles import TOKEN_FILE, read_token

PORT = 48123
BASE = f"http://127.0.0.1:{PORT}"


@pytest.fixture
def api_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """A fresh home whose vault is the encrypted file, keyed from the environment.

    (The keychain backend needs a D-Bus session; the vault's own suite runs it there. Here
    the routes are under test, so the backend that runs everywhere is used.)
    """
    monkeypatch.setenv("BASTION_VAULT_KEY", base64.b64encode(os.urandom(32)).decode())
    return load_config(
        tmp_path / "home",
        env={"BASTION_VAULT_BACKEND": "encrypted-file", "BASTION_VAULT_KEY_SOURCE": "env"},
    )


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


@pytest.fixture
def app(opened: Home) -> FastAPI:
    return create_app(opened, port=PORT, dashboard=False)


@pytest.fixture
def anon(app: FastAPI) -> Iterator[TestClient]:
    """A client with the right Host and no token."""
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def client(app: FastAPI, token: str) -> Iterator[TestClient]:
    """A client with the right Host and the token."""
    with TestClient(
        app,
        base_url=BASE,
        headers={"Authorization": f"Bearer {token}"},
        raise_server_exceptions=False,
    ) as c:
        yield c
