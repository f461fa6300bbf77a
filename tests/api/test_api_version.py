"""The HTTP API's own semver: in the handshake line, ``GET /health``, ``/v1/status`` and the
OpenAPI document, equal everywhere."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bastion.__about__ import __api_version__, __version__
from bastion.runfiles import Handshake, read_handshake

from .daemon_process import RunningDaemon

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


def test_api_version_is_semver() -> None:
    assert SEMVER.match(__api_version__)


def test_health_status_and_openapi_carry_it(anon: TestClient, client: TestClient) -> None:
    health = anon.get("/health").json()
    assert health == {
        "status": "ok",
        "version": __version__,
        "api_version": __api_version__,
        "pid": os.getpid(),  # the daemon's process (here, the test's app)
    }
    assert client.get("/v1/status").json()["api_version"] == __api_version__
    assert client.get("/openapi.json").json()["info"]["version"] == __api_version__


@pytest.mark.posix
def test_handshake_line_and_file_carry_it(tmp_path: Path) -> None:
    daemon = RunningDaemon(tmp_path / "home")
    try:
        assert daemon.handshake["api_version"] == __api_version__
        # GET /health names the same process: a client checks it before sending the token.
        assert daemon.client.get("/health")["pid"] == daemon.handshake["pid"]
        on_disk = read_handshake(tmp_path / "home" / "run")
        assert on_disk is not None
        assert on_disk.api_version == __api_version__
    finally:
        daemon.terminate()


def test_a_handshake_from_an_older_daemon_reads_as_unknown() -> None:
    old = {"pid": 1, "port": 2, "started_at": "x", "version": "0.0.9"}
    assert Handshake.from_dict(old).api_version == ""
