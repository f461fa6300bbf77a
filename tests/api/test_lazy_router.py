"""The routers whose module is imported on the first request under their paths
(``LAZY_ROUTERS``, bastion/api/lazy_router.py; issue 22 §7): each module's routes are all
under the paths that load it, the app documents itself and answers exactly as one that
imported every module first, and a first request loads its own router, no other."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from bastion.api import app as app_module
from bastion.api.app import LAZY_ROUTERS, create_app, load_routers
from bastion.api.dashboard.routes import DATA_PATHS
from bastion.api.lazy_router import LazyRouter
from bastion.app import Home

from .conftest import PORT, authorized


def _paths(routes: list[Any]) -> Iterator[str]:
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            prefix = getattr(route, "include_context", None)
            assert prefix is None or not getattr(prefix, "prefix", ""), "no include prefix"
            yield from (inner.prefix + p for p in _paths(inner.routes))
        elif isinstance(route, APIRoute):
            yield route.path  # (DeferredAPIRoute: set at declaration, no build)
        else:
            yield route.path


LAZY = {f"bastion.api.routes.{name}": paths for name, paths in LAZY_ROUTERS.items()}
LAZY["bastion.api.dashboard.data"] = DATA_PATHS


@pytest.mark.parametrize("module", sorted(LAZY))
def test_every_route_of_a_lazy_module_is_under_its_paths(module: str) -> None:
    router = importlib.import_module(module).router
    paths = [router.prefix + p for p in _paths(router.routes)]
    assert paths, module
    lazy = LazyRouter(module, LAZY[module])
    # A route outside them would never load its module: a 404 until something else did.
    assert [p for p in paths if not lazy.covers(p)] == []


@pytest.fixture
def apps(opened: Home, token: str, monkeypatch: pytest.MonkeyPatch) -> tuple[FastAPI, FastAPI]:
    lazy = create_app(opened, port=PORT, token=token)
    monkeypatch.setattr(app_module, "LAZY_ROUTERS", {})
    eager = create_app(opened, port=PORT, token=token)
    load_routers(eager)  # the dashboard's data router, lazy in both
    return lazy, eager


REQUESTS: list[tuple[str, str, Any]] = [
    ("GET", "/v1/secrets?limit=2", None),
    ("GET", "/v1/secrets?limit=0", None),  # 422
    ("GET", "/v1/secrets/api-key", None),  # 404 (both apps share a home: reads only)
    ("PUT", "/v1/secrets/Not%20A%20Name", {"value": "x"}),  # refused: nothing written
    ("POST", "/v1/secrets", None),  # 405
    ("GET", "/v1/secretsx", None),  # 404: not under the path, nothing loaded for it
    ("GET", "/v1/logs?limit=1", None),
    ("GET", "/v1/events?order=sideways", None),  # 422
    ("GET", "/v1/activity?limit=1", None),
    ("GET", "/v1/services", None),  # 503: no supervisor in this app
    ("GET", "/v1/services/no-such/logs", None),
    ("GET", "/v1/settings", None),
    ("GET", "/health", None),
    ("GET", "/v1/dashboard/backups/job", None),
    ("GET", "/v1/dashboard/db/samples?since=x", None),  # 422
]


def _answers(app: FastAPI, token: str) -> list[Any]:
    out = []
    with authorized(app, token) as client:
        for method, path, body in REQUESTS:
            reply = client.request(method, path, json=body)
            payload = reply.json() if reply.content else None
            if isinstance(payload, dict):
                payload.pop("updated_at", None)
                payload.pop("created_at", None)
            out.append([method, path, reply.status_code, payload])
    return out


def test_lazy_and_eager_apps_document_and_answer_alike(
    apps: tuple[FastAPI, FastAPI], token: str
) -> None:
    lazy, eager = apps
    routers = [r.original_router for r in lazy.router.routes if hasattr(r, "original_router")]
    assert sum(isinstance(r, LazyRouter) for r in routers) == len(LAZY)
    document = json.dumps(lazy.openapi())  # loads them all first
    assert document == json.dumps(eager.openapi())
    assert all(r.loaded for r in routers if isinstance(r, LazyRouter))
    assert _answers(lazy, token) == _answers(eager, token)


def test_a_loaded_table_walks_like_an_eager_one(apps: tuple[FastAPI, FastAPI]) -> None:
    lazy, eager = apps
    load_routers(lazy)
    assert sorted(_paths(lazy.routes)) == sorted(_paths(eager.routes))


FIRST = r"""
import json, sys, tempfile
from fastapi.testclient import TestClient
from bastion.api.app import LAZY_ROUTERS, create_app
from bastion.app import Home
from bastion.config import load_config

TOKEN = "t" * 43
def loaded():
    return sorted(n for n in LAZY_ROUTERS if "bastion.api.routes." + n in sys.modules)

note = {}
with Home.init(load_config(tempfile.mkdtemp(), env={})) as h:
    client = TestClient(create_app(h, port=8080, token=TOKEN), base_url="http://127.0.0.1:8080")
    auth = {"Authorization": "Bearer " + TOKEN}
    note["built"] = loaded()
    for path in ("/health", "/v1/settings", "/v1/secretsx", "/v1/secrets", "/v1/activity"):
        note[path] = [client.get(path, headers=auth).status_code, loaded()]
print(json.dumps(note))
"""


def test_a_first_request_loads_its_own_router_and_no_other(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", FIRST],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    note = json.loads(out.stdout.strip().splitlines()[-1])
    assert note == {
        "built": [],
        "/health": [200, []],
        "/v1/settings": [200, []],
        "/v1/secretsx": [404, []],
        "/v1/secrets": [200, ["secrets"]],
        "/v1/activity": [200, ["logs", "secrets"]],
    }
