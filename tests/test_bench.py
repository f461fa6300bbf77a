"""Every ``bench/`` script still runs against the current code: each once, at a tiny size.

The figures printed at this size mean nothing. Benchmarks are run by hand, at full size and
one at a time (README, "Benchmarks"). What this checks is that every script runs to its end
and prints its figures against their targets, so a change to an API cannot leave a benchmark
broken until the next time someone needs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"

#: Script -> arguments that make it quick. Scripts without size options run at their size.
TINY: dict[str, list[str]] = {
    "store_write.py": [
        "--ops",
        "50",
        "--rounds",
        "1",
        "--durable-ops",
        "5",
        "--metrics",
        "--metrics-rounds",
        "2",
        "--metrics-ops",
        "20",
    ],
    "store_read.py": ["--reads", "500", "--rounds", "1"],
    "repo.py": [],
    "backup.py": ["--size-mb", "4", "--rounds", "1"],
    "archive.py": [
        "--seconds",
        "0.3",
        "--rounds",
        "1",
        "--history-mb",
        "2",
        "--restore-rounds",
        "1",
    ],
    "encryption.py": [
        "--rows",
        "2000",
        "--reads",
        "300",
        "--rmw",
        "20",
        "--size-mb",
        "2",
        "--rounds",
        "1",
    ],
    "vault.py": ["--gets", "200", "--keychain-rounds", "2"],
    "vault_index.py": ["--secrets", "50", "--requests", "5"],
    "logs.py": ["20000", "--search-rows", "20000"],
    "fts_check.py": ["--rows", "5000", "--rounds", "1"],
    "supervise.py": [],
    # needs wrk: `make test` installs it
    "api.py": ["--seconds", "1", "--runs", "1", "--metrics", "--metrics-rounds", "1"],
    "cli_startup.py": ["--runs", "2"],
    "idle.py": ["--services", "2", "--seconds", "1", "--settle", "0"],
    "serve_startup.py": [
        "--runs",
        "1",
        "--sizes-mb",
        "0,1",
        "--phases",
        "--imports",
        "--first-answer",
    ],
    "dist.py": ["--runs", "1"],  # and --exe: the session's build (tests/conftest.py)
    # Starts a PostgreSQL server of its own (tests/pgserver.py's recipe).
    "postgres.py": ["--ops", "20", "--rounds", "1", "--per-writer", "5"],
}


def test_every_bench_script_is_listed() -> None:
    scripts = {p.name for p in BENCH.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(TINY), "add the new script to TINY with arguments that keep it quick"


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(set(TINY) - {"dist.py"}))
def test_bench_script_runs_to_the_end(
    script: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if script == "postgres.py":
        request.applymarker(pytest.mark.postgres)
        from tests import pgserver

        if pgserver.find_bindir() is None:
            pytest.skip("no PostgreSQL server installed (Debian's postgresql package)")
    _run_to_the_end(script, tmp_path)


# bench/dist.py has a test of its own that names ``bastion_exe`` as an argument: the conftest
# hook that adds the PyInstaller build's time to a test's timeout sees only fixtures known at
# collection. Asked for with request.getfixturevalue, the build (279 s under load) counted
# against the bench's 300 s whenever this was the session's first user of the executable
# (random order, or tests/test_bench.py alone).
@pytest.mark.slow
@pytest.mark.dist
def test_dist_bench_runs_to_the_end(bastion_exe: Path, tmp_path: Path) -> None:
    _run_to_the_end("dist.py", tmp_path, "--exe", str(bastion_exe))


def _run_to_the_end(script: str, tmp_path: Path, *extra: str) -> None:
    env = {**os.environ, "BASTION_HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *TINY[script], *extra],
        check=False,  # the output goes into the failure message
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "target" in result.stdout, result.stdout
