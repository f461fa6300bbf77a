"""The API's response models build their pydantic schema on first use, not at start-up
(issue 22 §7; ``RESPONSE_CONFIG`` in bastion/api/models.py), and that changes no answer.

By mechanism in a fresh interpreter (every test process before this one may already have
built the models): after the app is built, no response model of any route is built, every
request body's model is; a route's first answer builds what it sends. Then against a real
daemon: the first requests after the handshake, many at once on every JSON route, all
answer as a second, sequential round does (a deferred build raced by two threads is what
pydantic's rebuild lock, pydantic >= 2.14, is for).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from .daemon_process import RunningDaemon

PROBE = r"""
import json, sys, tempfile, typing, warnings
warnings.simplefilter("error")  # a deferred build may not warn where FastAPI's did not

import pydantic
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from bastion.api.app import create_app
from bastion.app import Home
from bastion.config import load_config

def models_in(annotation):
    # The model classes an annotation names: Health, list[BackupRow], Page[SecretOut], ...
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from models_in(arg)

def api_routes(routes):
    # Into included routers (FastAPI 0.165 keeps each as one entry holding its router) and
    # mounts, whichever way this FastAPI nests them.
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        yield from api_routes(inner if inner is not None else getattr(route, "routes", ()))

home = tempfile.mkdtemp()
with Home.init(load_config(home, env={})) as h:
    app = create_app(h, port=8080, token="t" * 43)
    responses, bodies = {}, {}
    for route in api_routes(app.routes):
        for model in models_in(route.response_model):
            responses[model.__qualname__] = model
        if route.body_field is not None:
            for model in models_in(route.body_field.field_info.annotation):
                bodies[model.__qualname__] = model
    note = {
        "responses_built": sorted(n for n, m in responses.items() if m.__pydantic_complete__),
        "responses": sorted(responses),
        "bodies_deferred": sorted(n for n, m in bodies.items() if not m.__pydantic_complete__),
        "bodies": sorted(bodies),
    }
    client = TestClient(app, base_url="http://127.0.0.1:8080")
    answer = client.get("/health")
    note["health"] = [answer.status_code, answer.json()]
    note["health_built"] = responses["Health"].__pydantic_complete__
    note["status_built_before"] = responses["Status"].__pydantic_complete__
    note["openapi_paths"] = len(client.get("/openapi.json", headers={"Authorization": "Bearer " + "t" * 43}).json()["paths"])
print(json.dumps(note))
"""


def test_response_models_are_built_by_their_first_answer_not_at_start(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]
    note = json.loads(out.stdout.strip().splitlines()[-1])
    # Every route's response model waits for first use (there are some 30 of them) ...
    assert len(note["responses"]) >= 20, note["responses"]
    assert note["responses_built"] == [], note["responses_built"]
    # ... while every request body is built with its route, as FastAPI builds it.
    assert len(note["bodies"]) >= 5, note["bodies"]
    assert note["bodies_deferred"] == [], note["bodies_deferred"]
    # A first answer builds the model it sends, and only that one.
    assert note["health"][0] == 200
    assert note["health"][1]["status"] == "ok"
    assert note["health_built"] is True
    assert note["status_built_before"] is False
    # The OpenAPI document builds from the deferred models, without a warning (-W error).
    assert note["openapi_paths"] > 30


#: Every JSON GET route without a path parameter (the streams are left out: they never end).
ROUTES = (
    "/health",
    "/v1/status",
    "/v1/activity",
    "/v1/dashboard/backups",
    "/v1/dashboard/backups/job",
    "/v1/dashboard/db/samples",
    "/v1/db/check",
    "/v1/db/migrations",
    "/v1/db/status",
    "/v1/events",
    "/v1/logs",
    "/v1/metrics/series",
    "/v1/secrets",
    "/v1/secrets/status",
    "/v1/services",
    "/v1/services/problems",
    "/v1/settings",
)

THREADS = 12


def _get(daemon: RunningDaemon, path: str) -> tuple[int, object]:
    request = urllib.request.Request(daemon.base + path)
    request.add_header("Authorization", f"Bearer {daemon.token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def _shape(body: object) -> object:
    """What must not differ between two answers of the same route a moment apart: the keys
    (values such as uptimes and counters move)."""
    return sorted(body) if isinstance(body, dict) else type(body).__name__


@pytest.mark.posix
@pytest.mark.slow
def test_first_requests_at_once_on_every_route_answer_as_later_ones(tmp_path: Path) -> None:
    daemon = RunningDaemon(tmp_path / "home")
    try:
        barrier = threading.Barrier(THREADS)
        answers: list[list[tuple[str, int, object]]] = [[] for _ in range(THREADS)]

        def first_requests(i: int) -> None:
            barrier.wait(timeout=60)
            # Each thread walks the routes from another starting point: every route gets
            # first requests from several threads at the same moment.
            order = ROUTES[i % len(ROUTES) :] + ROUTES[: i % len(ROUTES)]
            for path in order:
                status, body = _get(daemon, path)
                answers[i].append((path, status, _shape(body)))

        threads = [threading.Thread(target=first_requests, args=(i,)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert not any(thread.is_alive() for thread in threads)

        later = {}
        for path in ROUTES:
            status, body = _get(daemon, path)
            assert status == 200, (path, status, body)
            later[path] = _shape(body)
        for got in answers:
            assert len(got) == len(ROUTES)
            for path, status, shape in got:
                assert (status, shape) == (200, later[path]), path
    finally:
        assert daemon.terminate() == 0, daemon.log()
    assert "Traceback" not in daemon.log()
