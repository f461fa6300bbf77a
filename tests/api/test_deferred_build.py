"""What the API builds on first use instead of at start-up (issue 22 §7), and that it changes
no answer: each route's FastAPI analysis (``DeferredAPIRoute``, bastion/api/deferred_route.py)
and each response model's pydantic schema (``RESPONSE_CONFIG``, bastion/api/models.py).

By mechanism in fresh interpreters (a test process that ran other tests has built them
already): after the app is built, no route is analysed and no response model built; a first
request builds its own router's routes and the model it sends, nothing else. An app of
deferred routes documents itself and answers (successes and every kind of refusal) exactly
as one of FastAPI's own routes. Against a real daemon: the first requests after the
handshake, many at once on every JSON route, answer as a later, sequential round does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .daemon_process import RunningDaemon

TOKEN = "t" * 43

#: The app on a fresh home, served in-process (Starlette's TestClient); ``EAGER`` swaps the
#: deferred route class for FastAPI's own before any route module is imported.
APP = r"""
import json, sys, tempfile, typing, warnings
warnings.simplefilter("error")  # a deferred build may not warn where FastAPI's did not

if sys.argv[1] == "eager":
    import fastapi.routing
    import bastion.api.deferred_route
    bastion.api.deferred_route.DeferredAPIRoute = fastapi.routing.APIRoute

import pydantic
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from bastion.api.app import create_app, load_routers
from bastion.api.deferred_route import is_built
from bastion.app import Home
from bastion.config import load_config

TOKEN = "t" * 43

def api_routes(routes, router=None):
    # (router, route) pairs, into included routers (FastAPI 0.16x keeps each as one entry
    # holding its router) and mounts, whichever way this FastAPI nests them.
    for route in routes:
        if isinstance(route, APIRoute):
            yield router, route
            continue  # (a getattr on a deferred route would build it)
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from api_routes(inner.routes, inner)
        else:
            yield from api_routes(getattr(route, "routes", ()), router)

def models_in(annotation):
    # The model classes an annotation names: Health, list[BackupRow], Page[SecretInfo], ...
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from models_in(arg)

home = tempfile.mkdtemp()
with Home.init(load_config(home, env={})) as h:
    app = create_app(h, port=8080, token=TOKEN)
    # The routers imported on first use (bastion/api/lazy_router.py) too: declared, not built.
    load_routers(app)
    client = TestClient(app, base_url="http://127.0.0.1:8080")
    auth = {"Authorization": "Bearer " + TOKEN}
    routes = list(api_routes(app.routes))
    note = {"routes": len(routes), "built_at_start": sum(is_built(r) for _, r in routes)}
    if sys.argv[2] == "mechanism":
        health = client.get("/health")
        note["health"] = [health.status_code, health.json()]
        system = next(router for router, r in routes if r.path == "/health")
        note["built_after_health"] = sorted(
            (router is system, is_built(r)) for router, r in routes
        )
        # Reading a route's options builds it: its models, and nothing sent yet.
        responses, bodies = {}, {}
        for _, route in routes:
            for model in models_in(route.response_model):
                responses[model.__qualname__] = model
            if route.body_field is not None:
                for model in models_in(route.body_field.field_info.annotation):
                    bodies[model.__qualname__] = model
        note["responses"] = sorted(responses)
        note["responses_built"] = sorted(n for n, m in responses.items() if m.__pydantic_complete__)
        note["bodies"] = sorted(bodies)
        note["bodies_deferred"] = sorted(n for n, m in bodies.items() if not m.__pydantic_complete__)
    else:
        answers = []
        for method, path, body, headers in json.loads(sys.argv[3]):
            reply = client.request(method, path, json=body, headers={**auth, **headers})
            text = reply.text.replace(home, "<home>")  # each run has its own home
            try:
                payload = json.loads(text)
            except ValueError:
                payload = text
            answers.append([method, path, reply.status_code, payload])
        note["answers"] = answers
        note["openapi"] = client.get("/openapi.json", headers=auth).json()
print(json.dumps(note))
"""


def _app(tmp_path: Path, kind: str, mode: str, requests: list[Any] | None = None) -> Any:
    out = subprocess.run(
        [sys.executable, "-c", APP, kind, mode, json.dumps(requests or [])],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_nothing_is_built_at_start_and_a_first_request_builds_only_its_own(
    tmp_path: Path,
) -> None:
    note = _app(tmp_path, "deferred", "mechanism")
    assert note["routes"] >= 40
    assert note["built_at_start"] == 0
    assert note["health"][0] == 200
    assert note["health"][1]["status"] == "ok"
    # /health's first request built the routes of its own router (FastAPI builds a router's
    # routes for its inclusion on that router's first request), and no other router's.
    after = note["built_after_health"]
    own_router = [built for own, built in after if own]
    assert own_router
    assert all(own_router)
    assert not any(built for own, built in after if not own)
    # Every route's response model waits for first use, even once the route is analysed
    # (its schema is built by its first answer); every request body is built with its route,
    # as FastAPI builds it (a body's deferred build would warn: -W error).
    assert len(note["responses"]) >= 20, note["responses"]
    assert note["responses_built"] == ["Health"], note["responses_built"]
    assert len(note["bodies"]) >= 5, note["bodies"]
    assert note["bodies_deferred"] == [], note["bodies_deferred"]


#: Successes and each kind of refusal a route makes itself (its parameters, its body, its
#: path, its method), in an order that writes before it reads back.
REQUESTS: list[tuple[str, str, Any, dict[str, str]]] = [
    ("GET", "/health", None, {}),
    ("PUT", "/v1/settings/ui.theme", {"value": "dark"}, {}),
    ("GET", "/v1/settings/ui.theme", None, {}),
    ("GET", "/v1/settings?limit=1", None, {}),
    ("GET", "/v1/settings?limit=0", None, {}),
    ("GET", "/v1/settings/no.such.key", None, {}),
    ("PUT", "/v1/settings/ui.theme", {"value": "dark", "extra": 1}, {}),
    ("PUT", "/v1/settings/ui.theme", ["not", "an", "object"], {}),
    ("PUT", "/v1/settings/bad key!", {"value": 1}, {}),
    ("DELETE", "/v1/settings/ui.theme", None, {}),
    ("GET", "/v1/logs?limit=abc", None, {}),
    ("GET", "/v1/logs?level=loud", None, {}),
    ("GET", "/v1/logs?order=sideways", None, {}),
    ("GET", "/v1/events?limit=5", None, {}),
    ("GET", "/v1/secrets?sort=colour", None, {}),
    ("GET", "/v1/secrets/status?names=a,b", None, {}),
    ("GET", "/v1/services", None, {}),
    ("GET", "/v1/services/nope", None, {}),
    ("POST", "/v1/services/nope/dance", None, {}),
    ("GET", "/v1/db/migrations", None, {}),
    ("GET", "/v1/db/check?kind=everything", None, {}),
    ("POST", "/health", None, {}),
    ("GET", "/v1/no/such/route", None, {}),
    ("GET", "/v1/dashboard/backups/job", None, {}),
]

#: Values that move between two runs (times, durations, the process, sizes).
MOVING_SUFFIXES = ("_at", "_ms", "_s", "_bytes")
MOVING = {
    "ts",
    "time",
    "created_at",
    "updated_at",
    "started_at",
    "checked_at",
    "uptime_s",
    "pid",
    "path",
    "id",
    "next_cursor",
    "duration_ms",
}


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: ("<moves>" if k in MOVING or k.endswith(MOVING_SUFFIXES) else _stable(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def test_deferred_routes_answer_and_document_themselves_as_fastapis_own(tmp_path: Path) -> None:
    eager = _app(tmp_path, "eager", "answers", REQUESTS)
    deferred = _app(tmp_path, "deferred", "answers", REQUESTS)
    # The swap took: FastAPI's own routes are built as they are declared.
    assert eager["built_at_start"] == eager["routes"]
    assert deferred["built_at_start"] == 0
    assert deferred["openapi"] == eager["openapi"]
    statuses = {status for _, _, status, _ in eager["answers"]}
    assert {200, 404, 405, 422} <= statuses, statuses
    for got, want in zip(deferred["answers"], eager["answers"], strict=True):
        assert _stable(got) == _stable(want), got[:2]


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
