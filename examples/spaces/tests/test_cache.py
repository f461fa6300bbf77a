"""``getAllSecrets`` after the first read answers from memory (the space's values kept by
``bastion.vault.cache.ScopeCache``), and a key set, changed or deleted by another process --
or the space deleted -- is seen by the very next ``get_all_secrets``: the scope's stamp in
``vault.db`` moved. Counts of vault reads, never timings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bastion.config import Config
from bastion.vault import Secret
from examples.spaces.app import SpacesApp

REPO = Path(__file__).resolve().parents[3]


def revealed(found: dict[str, Secret]) -> dict[str, str]:
    return {k: v.reveal() for k, v in found.items()}


def other_process(cfg: Config, env: dict[str, str], *args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "examples.spaces.tests.worker", "change", *args],
        cwd=REPO,
        env={**os.environ, **env, "SPACES_TEST_HOME": str(cfg.home)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["changed"]


def test_get_all_secrets_answers_from_memory_after_the_first_read(
    cfg: Config, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with SpacesApp.open(cfg, env=env) as app:
        app.create_space("s1", "Space one")
        for i in range(20):
            app.secrets.set_secret("s1", f"provider_{i:02d}_api_key", f"sk-{i:02d}")
        reads: list[str] = []
        real = app.vault.get_many

        def get_many(*args: Any, **kwargs: Any) -> dict[str, Secret]:
            reads.append(str(kwargs.get("scope")))
            return real(*args, **kwargs)

        monkeypatch.setattr(app.vault, "get_many", get_many)
        expected = {f"provider_{i:02d}_api_key": f"sk-{i:02d}" for i in range(20)}
        for _ in range(5):
            assert revealed(app.secrets.get_all_secrets("s1")) == expected
        assert reads == ["space:s1"]  # one batch read of the vault; four answers from memory
        assert (app.secrets.cache.fills, app.secrets.cache.hits) == (1, 4)
        # This process's own write is a change like any other.
        app.secrets.set_secret("s1", "provider_00_api_key", "sk-rotated")
        assert app.secrets.get_all_secrets("s1")["provider_00_api_key"].reveal() == "sk-rotated"
        assert reads == ["space:s1"] * 2


def test_a_change_by_another_process_is_seen_by_the_next_get_all_secrets(
    cfg: Config, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with SpacesApp.open(cfg, env=env) as app:
        app.create_space("s1", "Space one")
        app.secrets.set_secret("s1", "openai_api_key", "sk-one")
        assert revealed(app.secrets.get_all_secrets("s1")) == {"openai_api_key": "sk-one"}
        assert revealed(app.secrets.get_all_secrets("s1")) == {"openai_api_key": "sk-one"}
        assert app.secrets.cache.hits == 1  # held in memory from here on
        other_process(cfg, env, "set", "s1", "anthropic_api_key", "sk-ant")
        assert revealed(app.secrets.get_all_secrets("s1")) == {
            "anthropic_api_key": "sk-ant",
            "openai_api_key": "sk-one",
        }
        other_process(cfg, env, "set", "s1", "openai_api_key", "sk-rotated")
        assert revealed(app.secrets.get_all_secrets("s1")) == {
            "anthropic_api_key": "sk-ant",
            "openai_api_key": "sk-rotated",
        }
        other_process(cfg, env, "delete", "s1", "anthropic_api_key", "-")
        assert revealed(app.secrets.get_all_secrets("s1")) == {"openai_api_key": "sk-rotated"}
        other_process(cfg, env, "delete-space", "s1", "-", "-")
        assert app.secrets.get_all_secrets("s1") == {}
        assert app.secrets.cache.fills == 5
