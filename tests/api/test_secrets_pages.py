"""``GET /v1/secrets?limit=`` and ``GET /v1/secrets/status?names=`` cost the rows they answer.

Both were answered by loading every secret of the vault into Python (40-60 ms at 10,000
secrets). The same requests on a vault of 20 and of 600 secrets must make SQLite do the same
work: its own step counts (tests/sqlsteps.py) show it, exactly and without a clock.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bastion.api import create_app
from bastion.app import Home
from bastion.config import load_config
from bastion.runfiles import TOKEN_FILE, read_token
from tests.helpers import file_vault_env
from tests.sqlsteps import sqlite_steps

from .conftest import BASE, PORT


def _requests_cost(root: Path, n: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    cfg = load_config(root, env=file_vault_env(monkeypatch))
    costs: dict[str, int] = {}
    # Every connection of this home is opened inside the counter, so all are traced.
    with sqlite_steps("vault.db") as steps, Home.init(cfg) as home:
        for i in range(n):
            home.vault.set(f"KEY_{i:04d}", f"value-{i}-0123456789", actor="test")
        token = read_token(cfg.run_dir / TOKEN_FILE)
        app = create_app(home, port=PORT, dashboard=False)
        with TestClient(app, base_url=BASE, headers={"Authorization": f"Bearer {token}"}) as c:
            for label, url in (
                ("page", "/v1/secrets?limit=5"),
                ("page by time", "/v1/secrets?limit=5&sort=updated_at&order=desc"),
                ("page of a scope", "/v1/secrets?limit=5&scope=global&sort=created_at"),
                ("status", "/v1/secrets/status?names=KEY_0001,KEY_0007,NOT_SET"),
            ):
                steps.reset()
                r = c.get(url)
                assert r.status_code == 200, r.text
                costs[label] = steps.steps
                if label == "status":
                    body = r.json()
                    assert body["count"] == n
                    assert body["secrets"]["KEY_0007"]["configured"] is True
                    assert body["secrets"]["NOT_SET"]["configured"] is False
                else:
                    body = r.json()
                    assert body["total"] == n
                    assert len(body["items"]) == 5
                    assert body["next_offset"] == 5
    return costs


def test_a_page_and_a_status_do_the_same_work_at_20_and_600_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = _requests_cost(tmp_path / "small", 20, monkeypatch)
    large = _requests_cost(tmp_path / "large", 600, monkeypatch)
    for label, steps in small.items():
        # 30x the secrets; the same work (slack for a deeper b-tree, never 30x).
        assert large[label] <= steps * 1.5 + 20, (label, small, large)
