"""Fixtures for the pupitre example: a fresh data directory and an open app in tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.pupitre.app import Pupitre


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "pupitre"


@pytest.fixture
def app(data_dir: Path) -> Iterator[Pupitre]:
    """An app with one active workspace, ``main``."""
    pupitre = Pupitre.open(data_dir)
    pupitre.create_workspace("main", "Main")
    try:
        yield pupitre
    finally:
        pupitre.close()
