"""The services view's pictures over time (GET /v1/metrics/series) in Chromium, against a
real ``bastion serve`` whose scheduler samples the metrics every second and a service that
crash-loops: its restarts chart rises as it restarts, with the latest value in the text."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.config import load_config
from bastion.runfiles import TOKEN_FILE, read_token
from tests.dashboard.conftest import (
    FILE_VAULT_TOML,
    Daemon,
    file_vault_env,
    open_page,
    spawn_daemon,
    stop_daemon,
)
from tests.helpers import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.posix, pytest.mark.slow]

#: The crasher's first run waits at a gate (a FIFO) until the test opens it, so the chart has
#: points from before its first crash however late the page comes; every run after the gate
#: is opened (a plain file by then) exits at once.
CRASHER_SCRIPT = """import sys
with open(sys.argv[1]) as gate:
    gate.read()
print('crasher: giving up', flush=True)
raise SystemExit(3)
"""
#: Restarts 1 s apart, three allowed, then the breaker stays open: the chart climbs 0 -> 3.
CRASHER_SPEC = """
[restart]
policy = "on-failure"
max_restarts = 3
window_s = 300
backoff_initial_s = 1
backoff_max_s = 1
jitter = 0.0

[breaker]
open_timeout_s = 600
"""


def gate_of(daemon: Daemon) -> Path:
    return daemon.home.parent / "crasher-gate"


def open_gate(gate: Path) -> None:
    """Let the crasher's waiting run go on to crash, and every later run at once: the FIFO is
    replaced by a plain file, then the writer the waiting run met is closed (its end of file)."""
    import errno

    def writer() -> int | None:
        try:  # succeeds once the crasher has the FIFO open for reading
            return os.open(gate, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as err:
            if err.errno != errno.ENXIO:
                raise
            return None

    fd = wait_until(writer, timeout=60, what="the crasher waiting at its gate")
    plain = gate.with_name(gate.name + ".plain")
    plain.write_bytes(b"")
    os.replace(plain, gate)
    os.close(fd)


@pytest.fixture(scope="module")
def sampled_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("metrics")
    home = root / "home"
    home.mkdir(mode=0o700)
    (home / "bastion.toml").write_text(FILE_VAULT_TOML + "\n[api]\nmetrics_sample_s = 1\n")
    env = file_vault_env()
    cfg = load_config(home, env=env)
    from bastion.app import Home

    Home.init(cfg).close()
    cfg.services_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    gate = root / "crasher-gate"
    os.mkfifo(gate, 0o600)
    argv = [sys.executable, "-c", CRASHER_SCRIPT, str(gate)]
    (cfg.services_dir / "crasher.toml").write_text(f"argv = {json.dumps(argv)}\n{CRASHER_SPEC}")
    running = spawn_daemon(home, env, root / "daemon.log")
    try:
        yield running
    finally:
        stop_daemon(running.proc)


def _values(page: Any, chart: str, series: str) -> list[float | None]:
    raw = page.get_attribute(f'#{chart} path[data-series="{series}"]', "data-values")
    return [float(v) if v else None for v in (raw or "").split(",")]


def test_a_crash_looping_service_makes_its_restarts_chart_rise(
    chromium: Any, sampled_daemon: Daemon
) -> None:
    daemon = sampled_daemon
    with open_page(chromium, daemon) as session:
        page = session.page
        page.wait_for_selector('body[data-loaded="services"]')
        page.wait_for_selector('#metric-restarts path[data-series="crasher"]', state="attached")
        open_gate(gate_of(daemon))
        # The page redraws every few seconds; wait for the third restart to be drawn.
        wait_until(
            lambda: (_values(page, "metric-restarts", "crasher") or [0])[-1] == 3,
            timeout=90,
            what="the restarts chart to reach 3",
        )
        drawn = [v for v in _values(page, "metric-restarts", "crasher") if v is not None]
        assert drawn == sorted(drawn)  # a counter, drawn as it rose
        assert drawn[0] < 3  # sampled while it rose: it did not start at its final value
        assert len(set(drawn)) >= 2
        # The line climbs on screen: its last point is higher (smaller y) than its first.
        d = page.get_attribute('#metric-restarts path[data-series="crasher"]', "d") or ""
        ys = [float(p.split(",")[1]) for p in d.replace("M", " ").replace("L", " ").split()]
        assert ys[-1] < ys[0]
        # Text alternatives: a title, and the latest value in the picture's name and under it.
        label = page.get_attribute("#metric-restarts", "aria-label") or ""
        assert label.startswith("Restarts per service, latest: crasher 3"), label
        assert page.inner_text("#metric-restarts-figure .metric-summary") == label
        assert page.inner_text("#t-metric-restarts") == "Restarts per service"
        assert page.locator("#metric-restarts-figure .legend li", has_text="crasher").count() == 1
        # Its output lines had a rate; the other two pictures are drawn with their titles.
        rates = [v for v in _values(page, "metric-lines", "crasher") if v is not None]
        assert rates
        assert max(rates) > 0
        commit = page.get_attribute("#metric-commit", "aria-label") or ""
        assert commit.startswith("Commit latency p99"), commit
    # The daemon's own scheduler takes samples too (not only the page's requests): its job
    # runs every second once its first run (5 s in, after the start: api/metrics.py) came.
    token = read_token(daemon.config.run_dir / TOKEN_FILE)

    def job() -> dict[str, Any]:
        status = httpx.get(
            f"{daemon.origin}/v1/status", headers={"Authorization": f"Bearer {token}"}, timeout=30
        ).json()
        return {j["name"]: j for j in status["jobs"]}["metrics-sample"]

    assert job()["interval_s"] == 1
    wait_until(lambda: job()["runs"] >= 3, timeout=60, what="three scheduled samples")


def test_the_samples_stay_in_memory(sampled_daemon: Daemon) -> None:
    """Nothing is written for the series: no file in run/ names it."""
    run_dir: Path = sampled_daemon.config.run_dir
    assert not [p for p in run_dir.iterdir() if "metric" in p.name or "series" in p.name]


def test_screenshot_of_the_pictures(chromium: Any, sampled_daemon: Daemon) -> None:
    """For a human look (build/screenshots/), at both widths the a11y test checks."""
    from tests.dashboard.conftest import SCREENSHOTS

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for width in (1280, 400):
        with open_page(chromium, sampled_daemon, width=width) as session:
            page = session.page
            page.wait_for_selector('#metric-restarts path[data-series="crasher"]', state="attached")
            page.locator("#metrics-over-time").screenshot(
                path=str(SCREENSHOTS / f"metrics-over-time-{width}.png")
            )
