"""The example's bench (``examples/spaces/bench.py``) runs to its end at a tiny size; the
figures printed at that size mean nothing (the README quotes a full-size run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_bench_runs_to_the_end(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "examples.spaces.bench", "--rounds", "4", "--calls", "2"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "encrypted-file: getAllSecrets of 20 keys" in result.stdout
    assert "target <= 1x" in result.stdout
    for variant in ("v1 cold", "v1 warm", "v2 cold", "v2 warm", "v2 warm / v1 cold"):
        assert f"  {variant}" in result.stdout
