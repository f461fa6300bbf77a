"""A few of ``GET /metrics``' figures over the last hour, for the dashboard's pictures:
restarts per service, COMMIT latency p99, log lines per second per service.

No second bookkeeping: a sample is read from the app's own
:class:`~prometheus_client.CollectorRegistry` (a ``restricted_registry`` of three families,
so only the in-memory store and supervisor collectors run -- no disk, no psutil) and kept
in a ring buffer in memory (a :class:`collections.deque` with a ``maxlen``: an hour of
samples, lost when the daemon stops, which is fine for a picture of the recent past; the
durable record is Prometheus', when one scrapes). Rates and the p99 are derived between
consecutive samples when asked (:func:`derive`, pure), never stored.

When: the daemon's scheduler takes a sample every ``[api] metrics_sample_s`` (10 s by
default). An idle daemon must cost next to nothing (#22 §7): one wake every 10 s reading a
few hundred ints is well under a millisecond of CPU per wake (72 µs measured without
services; < 0.01 % of a core), where a
once-a-second sampler would cost ten wakes for pictures nobody may be looking at. A request
for the series also takes a sample when the newest is older than the interval, so the page
shows the figures as of now, and an app without a scheduler (the in-process test client)
still has a series.
"""

# No `from __future__ import annotations` here: FastAPI and pydantic would turn every string
# annotation of the routes and models back into an object at start-up (a ForwardRef compiled
# and evaluated each, ~5 ms of the daemon's start; issue 22 §7). tests/api/test_fastapi_v1.py

import dataclasses
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from bastion.api.deferred_route import DeferredAPIRoute
from bastion.api.models import RESPONSE_CONFIG, UtcTime

if TYPE_CHECKING:  # a type only: prometheus_client loads with the first sample (#22 §7)
    from prometheus_client import CollectorRegistry

__all__ = [
    "WINDOW_S",
    "MetricsSeries",
    "Point",
    "Sample",
    "derive",
    "quantile",
    "read_sample",
    "router",
]

#: How far back the series reaches; the ring buffer holds this much at the sampling interval.
WINDOW_S = 3600.0
#: The families sampled (sample names as prometheus_client emits them).
RESTARTS = "bastion_service_restarts_total"
LOG_LINES = "bastion_service_log_lines_total"
COMMIT_BUCKETS = "bastion_store_commit_duration_seconds_bucket"
SAMPLED = (RESTARTS, LOG_LINES, COMMIT_BUCKETS)


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    """The sampled counters at one moment: ``ts`` wall clock (shown), ``mono`` monotonic
    (rates), restarts and log lines read per service, the COMMIT latency histogram's
    cumulative buckets as ``(upper bound, count)``, +Inf last."""

    ts: float
    mono: float
    restarts: Mapping[str, float]
    lines_read: Mapping[str, float]
    commit_buckets: tuple[tuple[float, float], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    """One point of the pictures: restarts so far per service; log lines per second per
    service and the COMMIT p99 in seconds over the interval since the previous sample
    (None for the first sample, and the p99 also when nothing committed in between)."""

    ts: float
    restarts: Mapping[str, int]
    log_lines_per_s: Mapping[str, float] | None
    commit_p99_s: float | None


def read_sample(registry: "CollectorRegistry", ts: float, mono: float) -> Sample:
    """The three families from ``registry`` (only their collectors run)."""
    restarts: dict[str, float] = {}
    lines: dict[str, float] = {}
    buckets: list[tuple[float, float]] = []
    for metric in registry.restricted_registry(SAMPLED).collect():
        for s in metric.samples:
            if s.name == RESTARTS:
                restarts[s.labels["service"]] = s.value
            elif s.name == LOG_LINES and s.labels.get("outcome") == "read":
                lines[s.labels["service"]] = s.value
            elif s.name == COMMIT_BUCKETS:
                buckets.append((float(s.labels["le"]), s.value))
    buckets.sort()
    return Sample(ts, mono, restarts, lines, tuple(buckets))


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of cumulative ``(upper bound, count)`` buckets (+Inf last), by
    linear interpolation inside the bucket it falls in -- what PromQL's
    ``histogram_quantile`` does; above the last finite bound, that bound. None if empty."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _delta(now: float, before: float | None) -> float:
    """A counter's increase; a counter lower than before was reset (a service removed and
    declared again), and counts from zero."""
    if before is None or now < before:
        return now
    return now - before


def derive(samples: Iterable[Sample]) -> list[Point]:
    """The points drawn from consecutive samples (pure)."""
    out: list[Point] = []
    prev: Sample | None = None
    for cur in samples:
        restarts = {name: int(n) for name, n in sorted(cur.restarts.items())}
        if prev is None or cur.mono <= prev.mono:
            out.append(Point(cur.ts, restarts, None, None))
            prev = cur
            continue
        dt = cur.mono - prev.mono
        rates = {
            name: _delta(n, prev.lines_read.get(name)) / dt
            for name, n in sorted(cur.lines_read.items())
        }
        before = dict(prev.commit_buckets)
        if [b for b, _ in prev.commit_buckets] == [b for b, _ in cur.commit_buckets]:
            interval = [(b, _delta(n, before.get(b))) for b, n in cur.commit_buckets]
        else:  # the first commit's sample (no buckets before it)
            interval = list(cur.commit_buckets)
        out.append(Point(cur.ts, restarts, rates, quantile(0.99, interval)))
        prev = cur
    return out


class MetricsSeries:
    """The ring buffer of samples: at most ``WINDOW_S / interval_s + 1`` of them.

    Sampled from the scheduler's thread and from request handlers' worker threads: a lock
    keeps appends and the copy taken for reading apart. Clocks are injected for tests.
    """

    def __init__(
        self,
        read: Callable[[float, float], Sample],
        *,
        interval_s: float,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self.window_s = window_s
        self._read = read
        self._clock = clock
        self._monotonic = monotonic
        #: The most samples kept (the oldest goes when one more comes).
        self.capacity = math.ceil(window_s / interval_s) + 1
        self._samples: deque[Sample] = deque(maxlen=self.capacity)
        self._lock = threading.Lock()

    def sample(self) -> None:
        """Read the registry now and keep the sample."""
        with self._lock:
            self._samples.append(self._read(self._clock(), self._monotonic()))

    def current(self) -> list[Sample]:
        """The samples, oldest first, after taking one if the newest is older than the
        interval (or there is none): a request sees the figures as of now."""
        with self._lock:
            now = self._monotonic()
            if not self._samples or now - self._samples[-1].mono >= self.interval_s:
                self._samples.append(self._read(self._clock(), now))
            return list(self._samples)


router = APIRouter(tags=["system"], route_class=DeferredAPIRoute)


class SeriesPointOut(BaseModel):
    model_config = RESPONSE_CONFIG

    ts: UtcTime
    #: Restarts of each service since the daemon started (backoff -> starting).
    restarts: dict[str, int]
    #: Output lines read from each service's children per second since the previous point.
    log_lines_per_s: dict[str, float] | None
    #: 99th percentile of the COMMIT statement's time since the previous point, in seconds.
    commit_p99_s: float | None


class MetricsSeriesOut(BaseModel):
    model_config = RESPONSE_CONFIG

    interval_s: float
    window_s: float
    points: list[SeriesPointOut]


def _series(request: Request) -> MetricsSeries:
    series: MetricsSeries = request.app.state.metrics_series
    return series


@router.get("/v1/metrics/series", response_model=MetricsSeriesOut)
def metrics_series(
    series: Annotated[MetricsSeries, Depends(_series)],
) -> MetricsSeriesOut:
    """Restarts per service, log lines per second per service and the COMMIT latency p99
    over the last hour, one point per sample of ``GET /metrics``' figures (every
    ``[api] metrics_sample_s``, kept in the daemon's memory). Served while metrics are on."""
    points = derive(series.current())
    return MetricsSeriesOut(
        interval_s=series.interval_s,
        window_s=series.window_s,
        points=[SeriesPointOut(**_point(p)) for p in points],
    )


def _point(p: Point) -> dict[str, Any]:
    return {
        "ts": p.ts,
        "restarts": dict(p.restarts),
        "log_lines_per_s": None if p.log_lines_per_s is None else dict(p.log_lines_per_s),
        "commit_p99_s": p.commit_p99_s,
    }
