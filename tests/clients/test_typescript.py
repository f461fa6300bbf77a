"""The TypeScript client's own suite (``node --test``), against a daemon from the venv and
from the standalone executable; and its generated types against a live daemon's OpenAPI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bastion.__about__ import __api_version__

from ..api.daemon_process import RunningDaemon
from .conftest import TS

pytestmark = [pytest.mark.node, pytest.mark.posix]

#: What `npm run generate` passes (package.json): request fields with defaults stay optional.
GENERATE_FLAGS = ["--default-non-nullable", "false"]


def run_node_suite(build: Path, executable: Path) -> None:
    tests = sorted(str(p) for p in (build / "test").glob("*.test.js"))
    assert tests, "no compiled tests"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env["BASTION_EXECUTABLE"] = str(executable)
    result = subprocess.run(
        ["node", "--test", "--test-concurrency=1", *tests],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
        env=env,
        cwd=TS,
    )
    summary = "\n".join(line for line in result.stdout.splitlines() if line.startswith("# "))
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-3000:]
    assert re.search(r"^# pass [1-9]", summary, re.M), summary
    assert "# fail 0" in summary, summary


def test_node_suite_against_the_venv_daemon(ts_build: Path) -> None:
    run_node_suite(ts_build, Path(sys.executable).with_name("bastion"))


@pytest.mark.dist
def test_node_suite_against_the_standalone_executable(ts_build: Path, bastion_exe: Path) -> None:
    run_node_suite(ts_build, bastion_exe)


def test_generated_types_match_the_live_schema(ts_build: Path, tmp_path: Path) -> None:
    daemon = RunningDaemon(tmp_path / "home")
    try:
        live = daemon.client.get("/openapi.json")
    finally:
        daemon.terminate()
    source = tmp_path / "openapi.json"
    source.write_text(json.dumps(live, indent=2))
    fresh = tmp_path / "schema.ts"
    result = subprocess.run(
        [
            str(TS / "node_modules" / ".bin" / "openapi-typescript"),
            str(source),
            *GENERATE_FLAGS,
            "--output",
            str(fresh),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    checked_in = (TS / "src" / "schema.ts").read_text()
    assert fresh.read_text() == checked_in, (
        "clients/typescript/src/schema.ts is stale against the daemon's OpenAPI: "
        "run `make ts-types` and commit the result"
    )
    generate = json.loads((TS / "package.json").read_text())["scripts"]["generate"]
    assert " ".join(GENERATE_FLAGS) in generate


def test_the_client_supports_this_daemons_api_major() -> None:
    source = (TS / "src" / "version.ts").read_text()
    majors = re.search(r"SUPPORTED_API_MAJORS: readonly number\[\] = \[([\d, ]+)\]", source)
    assert majors is not None
    assert int(__api_version__.split(".")[0]) in {int(m) for m in majors[1].split(",")}
