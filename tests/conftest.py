"""Suite-wide fixtures. The CI rule (a skipped system-part test fails under ``CI=true``)
lives in the repository's root ``conftest.py``, so it covers ``examples/`` too."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bastion.config import Config, load_config


@pytest.fixture
def home(tmp_path: Path) -> Config:
    """A config for a fresh, not yet initialised home under tmp_path (no env overrides)."""
    return load_config(tmp_path / "home", env={})


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def bastion_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The standalone executable, built once per session with ``scripts/build_dist.py``
    (PyInstaller from the project's venv; about 1.5-2 min on two cores) and shared by every
    test that needs it (tests/dist, the TypeScript client's suite, bench/dist.py's run).
    ``BASTION_DIST_EXE=path`` uses one built already (``make dist``) instead."""
    given = os.environ.get("BASTION_DIST_EXE")
    if given:
        return Path(given).resolve()
    if importlib.util.find_spec("PyInstaller") is None:
        pytest.skip("PyInstaller is not installed (the `dist` extra; `make venv` installs it)")
    root = tmp_path_factory.mktemp("dist")
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "build_dist.py"),
            "--out",
            str(root / "out"),
            "--work",
            str(root / "work"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    # The build's own summary line (size, seconds) lands in the test log for the record.
    print(result.stdout.strip().splitlines()[-1], f"(fixture {time.monotonic() - started:.0f}s)")
    return root / "out" / "bastion"
