"""The TypeScript client (clients/typescript) run by node against real daemons.

``make test`` installs its npm packages (``npm ci`` with the committed lockfile, install
scripts off) before the suite; the TypeScript is compiled once per session here.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TS = ROOT / "clients" / "typescript"


def node_reason() -> str | None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "Node.js and npm are not installed"
    if not (TS / "node_modules" / ".bin" / "tsc").exists():
        return "clients/typescript/node_modules is missing (`make node-deps` runs npm ci)"
    return None


@pytest.fixture(scope="session")
def ts_build() -> Path:
    """Compile clients/typescript (src and tests) with tsc; the output directory."""
    reason = node_reason()
    if reason:
        pytest.skip(reason)
    result = subprocess.run(
        [str(TS / "node_modules" / ".bin" / "tsc"), "-p", str(TS / "tsconfig.json")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return TS / "build"
