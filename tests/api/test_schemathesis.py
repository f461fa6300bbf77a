"""Property-based run of the live OpenAPI (schemathesis): no server errors, every response
matches its declared schema, status code and content type.

The server is the real app on a real loopback socket (uvicorn in a thread) over a real home:
a real vault (encrypted-file backend), a real supervisor with the demo services, real SQLite.
Streaming routes are left out (an SSE stream never ends); they have their own tests.
Pagination cursors get their own run: a generated string almost never decodes, so forged
cursors (any JSON, base64url-encoded) are sent to every keyset-paged operation.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks

from bastion.app import Home
from bastion.demo import seed_services

from .conftest import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.posix]

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]


@pytest.fixture(scope="module")
def live_schema(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Any]:
    import base64
    import os

    from bastion.config import load_config
    from bastion.runfiles import TOKEN_FILE, read_token

    key = base64.b64encode(os.urandom(32)).decode()
    mp = pytest.MonkeyPatch()
    mp.setenv("BASTION_VAULT_KEY", key)
    cfg = load_config(
        tmp_path_factory.mktemp("fuzz") / "home",
        env={"BASTION_VAULT_BACKEND": "encrypted-file", "BASTION_VAULT_KEY_SOURCE": "env"},
    )
    home = Home.init(cfg)
    seed_services(cfg, python=sys.executable, worker_interval=1.0)
    token = read_token(cfg.run_dir / TOKEN_FILE)
    home.vault.set("existing", "value-1", actor="test")
    home.settings.set("ui.theme", "dark")
    server = LiveServer(home, token, supervise=True)
    try:
        schema = schemathesis.openapi.from_url(
            f"{server.base}/openapi.json", headers={"Authorization": f"Bearer {token}"}
        )
        schema = schema.exclude(path_regex=r".*/stream$").exclude(path="/v1/shutdown")
        yield schema, server
    finally:
        server.stop()
        home.close()
        mp.undo()


@pytest.mark.timeout(900)
def test_live_api_conforms_to_its_openapi(live_schema: Any) -> None:
    schema, server = live_schema
    headers = {"Authorization": f"Bearer {server.token}"}
    failures: dict[str, str] = {}
    ran: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        label = operation.label

        @given(case=operation.as_strategy())
        @settings(
            max_examples=30,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            case.call_and_validate(base_url=server.base, headers=headers, checks=CHECKS, timeout=30)

        try:
            run()
        except (Exception, BaseExceptionGroup) as err:  # collect all operations' failures
            failures[label] = f"{type(err).__name__}: {str(err)[:2000]}"
        ran.append(label)
    assert len(ran) >= 20, ran
    assert not failures, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())


#: Every keyset-paged operation, with the path parameters it needs.
PAGED = [
    ("/v1/logs", {}),
    ("/v1/events", {}),
    ("/v1/activity", {}),
    ("/v1/services/{name}/logs", {"name": "demo-worker"}),
    ("/v1/services/{name}/events", {"name": "demo-worker"}),
]

#: Any JSON value: what a forged cursor may carry once base64 is peeled off.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**90), max_value=2**90)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)


def _cursor(value: Any) -> str:
    raw = json.dumps(value, allow_nan=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("path", "params"), PAGED, ids=[p for p, _ in PAGED])
def test_forged_cursors_are_400_naming_the_cursor(
    live_schema: Any, path: str, params: dict[str, str]
) -> None:
    """A cursor is the caller's input: whatever JSON (or not-JSON) it holds, the answer is
    the documented 400 ``invalid_request`` naming ``cursor``, or a page; never a 500."""
    schema, server = live_schema
    operation = schema[path]["GET"]
    headers = {"Authorization": f"Bearer {server.token}"}
    answered: list[int] = []

    @given(
        cursor=st.one_of(
            json_values.map(_cursor),
            st.lists(json_values, min_size=1, max_size=3).map(_cursor),
            st.text(max_size=60),
            st.sampled_from(
                [_cursor([{"a": 1}, 1]), _cursor([2**80, 1]), _cursor([2**80]), "Tg", "W10"]
            ),
        )
    )
    @settings(max_examples=150, deadline=None, database=None, derandomize=True)
    def run(cursor: str) -> None:
        case = operation.Case(path_parameters=params, query={"cursor": cursor})
        response = case.call_and_validate(
            base_url=server.base, headers=headers, checks=CHECKS[:4], timeout=30
        )
        answered.append(response.status_code)
        if response.status_code != 200:
            assert response.status_code in {400, 422}, response.text
            body = response.json()
            assert body["code"] == "invalid_request"
            assert "cursor" in body["message"]

    run()
    assert 400 in answered  # the forged ones were refused, not all served as pages
