"""GET /v1/metrics/series: samples of GET /metrics' figures over time, on a real loopback
server while a real supervisor runs a crash-looping child; and the pure parts (the p99 from
histogram buckets, rates between samples, the bounded ring buffer) with fake clocks."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.api.metrics_series import MetricsSeries, Sample, derive, quantile
from bastion.app import Home
from bastion.config import Config, load_config

from ..helpers import file_vault_env, wait_until
from .conftest import LiveServer

CRASHY = f"""argv = ["{sys.executable}", "-c", "print('boom'); print('bang'); raise SystemExit(3)"]

[restart]
policy = "on-failure"
max_restarts = 3
window_s = 300
backoff_initial_s = 0.3
backoff_max_s = 0.3
jitter = 0.0

[breaker]
open_timeout_s = 600
"""


@pytest.fixture
def api_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    return load_config(
        tmp_path / "home",
        env={**file_vault_env(monkeypatch), "BASTION_API_METRICS_SAMPLE_S": "1"},
    )


@pytest.fixture
def supervised(opened: Home, token: str) -> Iterator[LiveServer]:
    services = opened.config.services_dir
    services.mkdir(parents=True, exist_ok=True)
    (services / "crashy.toml").write_text(CRASHY)
    server = LiveServer(opened, token, supervise=True)
    try:
        yield server
    finally:
        server.stop()


def _get(server: LiveServer, path: str) -> Any:
    response = httpx.get(
        f"{server.base}{path}", headers={"Authorization": f"Bearer {server.token}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_the_series_moves_as_a_service_crash_loops_and_writes_commit(
    opened: Home, supervised: LiveServer
) -> None:
    server = supervised
    assert opened.config.api.metrics_sample_s == 1
    seen: list[dict[str, Any]] = []

    def restarts_rose() -> bool:
        body = _get(server, "/v1/metrics/series")
        assert body["interval_s"] == 1
        assert body["window_s"] == 3600
        seen[:] = body["points"]
        return bool(seen) and seen[-1]["restarts"].get("crashy", 0) >= 3

    wait_until(restarts_rose, timeout=60, what="crashy's three restarts in the series")
    counts = [p["restarts"].get("crashy", 0) for p in seen]
    assert counts == sorted(counts)  # a counter: never down
    assert counts[0] < counts[-1]  # it rose while sampled, not only at the end
    # The same figure /metrics reports (the series reads the same registry).
    scraped = httpx.get(
        f"{server.base}/metrics", headers={"Authorization": f"Bearer {server.token}"}, timeout=30
    ).text
    assert 'bastion_service_restarts_total{service="crashy"} 3.0' in scraped
    # Its output lines were read at a rate in some interval.
    assert any(p["log_lines_per_s"] and p["log_lines_per_s"].get("crashy", 0) > 0 for p in seen)
    assert seen[0]["log_lines_per_s"] is None  # the first point has no interval before it

    # Commits: none in the last interval -> no p99; writes -> a p99 in the next point.
    def quiet_point() -> bool:
        return _get(server, "/v1/metrics/series")["points"][-1]["commit_p99_s"] is None

    wait_until(quiet_point, timeout=60, what="an interval without commits")
    for i in range(20):
        put = httpx.put(
            f"{server.base}/v1/settings/series.k{i}",
            headers={"Authorization": f"Bearer {server.token}"},
            json={"value": i},
            timeout=30,
        )
        assert put.is_success, put.text
    latest: dict[str, Any] = {}

    def p99_shown() -> bool:
        latest.update(_get(server, "/v1/metrics/series")["points"][-1])
        return latest["commit_p99_s"] is not None

    wait_until(p99_shown, timeout=60, what="a commit p99 after the writes")
    assert 0 < latest["commit_p99_s"] <= 10


def test_metrics_off_serves_no_series(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from bastion.api.app import create_app
    from bastion.runfiles import TOKEN_FILE, read_token

    cfg = load_config(tmp_path / "home", env={"BASTION_API_METRICS": "false"})
    with Home.init(cfg) as home:
        token = read_token(cfg.run_dir / TOKEN_FILE)
        app = create_app(home, port=8765, token=token, dashboard=False)
        with TestClient(app, base_url="http://127.0.0.1:8765") as client:
            response = client.get(
                "/v1/metrics/series", headers={"Authorization": f"Bearer {token}"}
            )
    assert response.status_code == 404


def _buckets(*pairs: tuple[float, float]) -> tuple[tuple[float, float], ...]:
    return (*pairs, (float("inf"), pairs[-1][1]))


def test_quantile_interpolates_inside_the_bucket_as_promql_does() -> None:
    # 100 observations: 90 <= 1 ms, 10 in (1 ms, 2 ms]: p99 is 90% into the second bucket.
    buckets = _buckets((0.001, 90.0), (0.002, 100.0))
    assert quantile(0.99, buckets) == pytest.approx(0.001 + 0.001 * 0.9)
    assert quantile(0.5, buckets) == pytest.approx(0.001 * 50 / 90)
    assert quantile(0.99, _buckets((0.001, 0.0), (0.002, 0.0))) is None
    # Above every finite bound: the last finite bound.
    assert quantile(0.99, ((0.001, 1.0), (float("inf"), 100.0))) == 0.001


def _sample(t: float, restarts: float, lines: float, commits: float) -> Sample:
    return Sample(
        ts=1000 + t,
        mono=t,
        restarts={"svc": restarts},
        lines_read={"svc": lines},
        commit_buckets=((0.001, commits), (float("inf"), commits)),
    )


def test_derive_rates_and_p99_between_samples_and_counter_resets() -> None:
    points = derive(
        [
            _sample(0, 0, 0, 5),
            _sample(10, 1, 50, 5),  # 5 lines/s, no commit in between
            _sample(20, 2, 150, 9),  # 10 lines/s, 4 commits <= 1 ms
            _sample(30, 0, 20, 9),  # the service was declared anew: counts from zero
        ]
    )
    assert [p.restarts["svc"] for p in points] == [0, 1, 2, 0]
    assert points[0].log_lines_per_s is None
    assert points[0].commit_p99_s is None
    assert [p.log_lines_per_s and p.log_lines_per_s["svc"] for p in points[1:]] == [5, 10, 2]
    assert points[1].commit_p99_s is None
    assert points[2].commit_p99_s == pytest.approx(0.001 * 0.99)


def test_the_ring_buffer_keeps_an_hour_and_samples_on_request_only_when_stale() -> None:
    now = [0.0]
    reads: list[float] = []

    def read(ts: float, mono: float) -> Sample:
        reads.append(mono)
        return _sample(mono, 0, 0, 0)

    series = MetricsSeries(
        read, interval_s=10, clock=lambda: 1000 + now[0], monotonic=lambda: now[0]
    )
    assert series.capacity == 361  # 3600 s / 10 s, and the start
    assert len(series.current()) == 1  # none yet: one taken
    now[0] = 5
    assert len(series.current()) == 1  # fresh enough: none taken
    for _ in range(500):
        now[0] += 10
        series.sample()
    kept = series.current()
    assert len(kept) == 361
    assert len(reads) == 501
    assert kept[0].mono == now[0] - 3600
    assert kept[-1].mono == now[0]
    with pytest.raises(ValueError, match="interval_s"):
        MetricsSeries(read, interval_s=0)
