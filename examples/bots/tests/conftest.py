"""Fixtures for the bots example: a data directory in tmp_path and an open store."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.bots.store import DATA_DIR_ENV, MASTER_KEY_ENV, BotStore


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment the app would run with: data dir and vault master key."""
    return {
        DATA_DIR_ENV: str(tmp_path / "boternity"),
        MASTER_KEY_ENV: base64.b64encode(os.urandom(32)).decode(),
    }


@pytest.fixture
def store(env: dict[str, str]) -> Iterator[BotStore]:
    with BotStore.open(env=env) as opened:
        yield opened
