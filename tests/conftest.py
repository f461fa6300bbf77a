"""Suite-wide fixtures. The CI rule (a skipped system-part test fails under ``CI=true``)
lives in the repository's root ``conftest.py``, so it covers ``examples/`` too."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.config import Config, load_config


@pytest.fixture
def home(tmp_path: Path) -> Config:
    """A config for a fresh, not yet initialised home under tmp_path (no env overrides)."""
    return load_config(tmp_path / "home", env={})
