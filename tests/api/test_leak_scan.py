"""Secret leak scan: a sentinel secret, injected into a real service through a real daemon,
never appears in any route's response (but the audited reveal), nor in the daemon's log."""

from __future__ import annotations

import re
import secrets
import signal
import sys
from pathlib import Path

import pytest

from bastion.app import Home
from bastion.client import DaemonClient
from bastion.config import load_config
from bastion.demo import service_specs
from bastion.errors import BastionError

from ..helpers import file_vault_env, wait_until
from .daemon_process import RunningDaemon

pytestmark = [pytest.mark.posix, pytest.mark.slow]


def _fill(path: str, names: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: names.get(m.group(1), "x"), path)


@pytest.mark.timeout(240)
def test_no_route_and_no_log_line_carries_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sentinel = "sk-leak-" + secrets.token_hex(16)
    env = file_vault_env()
    home = tmp_path / "home"
    cfg = load_config(home, env=env)
    # The library reads the key from the process environment; monkeypatch puts back whatever
    # value was there before (a bare del would drop a key the runner had set).
    monkeypatch.setenv("BASTION_VAULT_KEY", env["BASTION_VAULT_KEY"])
    with Home.init(cfg) as h:
        h.vault.set("demo-api-key", sentinel, actor="test")
    monkeypatch.delenv("BASTION_VAULT_KEY")
    worker = service_specs(python=sys.executable, worker_interval=0.2)["demo-worker"]
    worker = worker.replace(
        "\n[stop]", '\nsecrets = { DEMO_API_KEY = "secret:global/demo-api-key" }\n\n[stop]', 1
    )
    (cfg.services_dir / "demo-worker.toml").write_text(worker)
    (cfg.services_dir / "demo-worker.toml").chmod(0o600)

    daemon = RunningDaemon(home, env=env)
    try:
        client: DaemonClient = daemon.client

        # The worker prints its key once at start: captured, and redacted before storage.
        def redacted_line() -> bool:
            page = client.get("/v1/services/demo-worker/logs", text="using api key")
            return bool(page["items"])

        wait_until(redacted_line, timeout=60, what="the worker's key line to be captured")
        client.put("/v1/secrets/second", {"value": sentinel + "-2"})
        client.put("/v1/settings/ui.theme", {"value": "dark"})

        bodies: list[str] = []
        names = {"name": "demo-api-key", "key": "ui.theme"}
        spec = client.get("/openapi.json")
        for path, ops in spec["paths"].items():
            if "get" not in ops or path.endswith("/stream"):
                continue
            variants = [_fill(path, names)]
            if "/services/" in path:
                variants = [_fill(path, {"name": "demo-worker"})]
            for url in variants:
                try:
                    bodies.append(str(client.get(url)))
                except BastionError as err:
                    bodies.append(str(err.to_dict()))
        # Error paths: a rejected value must not be echoed.
        for bad in ({"value": 1, "note": sentinel}, {"value": sentinel, "scope": "a/b"}):
            try:
                client.put("/v1/secrets/x", bad)
            except BastionError as err:
                bodies.append(str(err.to_dict()))
        # Streams, with their backlog.
        for stream_path in ("/v1/logs/stream", "/v1/services/demo-worker/logs/stream"):
            with client.stream(stream_path, query={"backlog": 200}, timeout=30) as stream:
                bodies.extend(next(stream).data for _ in range(5))
        with client.stream("/v1/events/stream", query={"backlog": 50}, timeout=30) as stream:
            bodies.append(next(stream).data)

        joined = "\n".join(bodies)
        assert "[REDACTED:" in joined  # the key line is there, redacted
        assert sentinel not in joined

        # Positive control: the one route made to return a value does, so the scan can fail.
        revealed = client.post("/v1/secrets/demo-api-key/reveal", {})
        assert revealed["value"] == sentinel

        assert daemon.terminate(signal.SIGTERM) == 0
        log = daemon.log()
        assert "stopping services" in log
        assert sentinel not in log
        assert daemon.token not in log
        assert sentinel not in daemon.first_line
    finally:
        daemon.close()
