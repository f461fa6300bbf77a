"""Property-based run of the live OpenAPI (schemathesis): no server errors, every response
matches its declared schema, status code and content type.

The server is the real app on a real loopback socket (uvicorn in a thread) over a real home:
a real vault (encrypted-file backend), a real supervisor with the demo services, real SQLite.
Streaming routes are left out (an SSE stream never ends); they have their own tests.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
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
