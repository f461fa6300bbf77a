"""``bastion serve`` declares its routes while the open-time check of ``bastion.db`` runs
(issue 22 §7): FastAPI's analysis of every route (most of ``create_app``) needs no home, so
it is done before the daemon waits for the check's result, on the main thread while SQLite
checks the file on another core. By mechanism: what is imported at the moment the daemon asks
for the check's result.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import pytest

from bastion.api.app import LAZY_ROUTERS, ROUTERS

from .daemon_process import RunningDaemon

pytestmark = [pytest.mark.posix, pytest.mark.slow]

WRAPPER = """
import json, runpy, sys
import bastion.app

NOTE = sys.argv.pop(1)
result = bastion.app.OpenCheckAhead.result

def noted(self, cfg):
    with open(NOTE, "w") as out:
        json.dump({"modules": sorted(sys.modules)}, out)
    return result(self, cfg)

bastion.app.OpenCheckAhead.result = noted
sys.argv[0] = "bastion"
runpy.run_module("bastion", run_name="__main__")
"""


def test_routes_are_declared_before_the_daemon_waits_for_the_check(tmp_path: Path) -> None:
    home = tmp_path / "home"
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(WRAPPER)
    note = tmp_path / "note.json"
    daemon = RunningDaemon(home, program=[sys.executable, str(wrapper), str(note)])
    try:
        request = urllib.request.Request(daemon.base + "/v1/status")
        request.add_header("Authorization", f"Bearer {daemon.token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
        loaded = set(json.loads(note.read_text())["modules"])
        expected = {f"bastion.api.routes.{name}" for name in ROUTERS if name not in LAZY_ROUTERS}
        expected |= {"bastion.api.dashboard.routes", "bastion.api.metrics_series"}
        assert expected <= loaded, sorted(expected - loaded)
        # Those loaded on their first request (bastion/api/lazy_router.py), not at all yet.
        lazy = {f"bastion.api.routes.{name}" for name in LAZY_ROUTERS}
        assert not (lazy | {"bastion.api.dashboard.data"}) & loaded
    finally:
        assert daemon.terminate() == 0, daemon.log()
