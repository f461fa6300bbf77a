"""``GET /metrics``: the daemon's figures in the Prometheus text format (OpenMetrics when the
scraper's ``Accept`` asks for it), behind the same bearer token as every other route.

Exposition is ``prometheus_client``'s; the figures are not kept in its metric objects. The
store, the supervisor, the vault and the app's error boundary count in plain ints and
:class:`~bastion._tally.Buckets` (cheaper on a hot path than a locked, labelled metric), and
one custom collector per app reads them, and the state they describe, when a scrape comes.
One :class:`~prometheus_client.CollectorRegistry` per app: two daemons in one process (the
tests) never share a figure.

``[api] metrics = false`` turns all of it off: no route, no request counting, no store tally.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from starlette.types import Scope

from bastion._tally import Buckets, VaultTally
from bastion.api.deferred_route import DeferredAPIRoute
from bastion.store.tally import StoreTally

if TYPE_CHECKING:
    from fastapi import FastAPI
    from prometheus_client import CollectorRegistry

    from bastion.api.state import DaemonState

__all__ = ["RequestTally", "install", "router"]

router = APIRouter(route_class=DeferredAPIRoute)
#: A path no route matched is counted under this template (never the raw path: unbounded).
UNMATCHED = "<unmatched>"


class RequestTally:
    """Requests by (method, route template, status), each key's latencies in one
    :class:`Buckets` (its count is the request count). Fed by the app's
    :class:`~bastion.api.errors.ErrorBoundary`, which already watches each response start."""

    def __init__(self, templates: dict[Any, str]) -> None:
        self.requests: dict[tuple[str, str, int], Buckets] = {}
        #: endpoint -> path template, for routes that leave no ``route`` in the scope.
        self.templates = templates

    def record(self, scope: Scope, status: int, seconds: float) -> None:
        """One request ended with ``status`` after ``seconds``."""
        template = getattr(scope.get("route"), "path", None) or self.templates.get(
            scope.get("endpoint"), UNMATCHED
        )
        key = (scope["method"], template, status)
        buckets = self.requests.get(key)
        if buckets is None:
            buckets = self.requests[key] = Buckets()
        buckets.observe(seconds)


class _Exporter:
    """What a scrape reads, and the registry over it, made on first use (a scrape, or a
    sample of the dashboard's series): importing ``prometheus_client`` and the collector
    (:mod:`bastion.api.metrics_collector`) is left out of the daemon's start (issue 22 §7);
    the counting itself runs from the start."""

    def __init__(
        self, state: DaemonState, requests: RequestTally, store: StoreTally, vault: VaultTally
    ) -> None:
        self._parts = (state, requests, store, vault)
        self._registry: CollectorRegistry | None = None
        self._lock = threading.Lock()  # two first uses at once build one registry

    def registry(self) -> CollectorRegistry:
        with self._lock:
            if self._registry is None:
                from bastion.api.metrics_collector import new_registry

                self._registry = new_registry(*self._parts)
            return self._registry

    def render(self, accept: str) -> tuple[bytes, str]:
        from bastion.api.metrics_collector import render

        return render(self.registry(), accept)


@router.get("/metrics", tags=["system"], include_in_schema=False)
async def metrics(request: Request) -> Response:
    """The registry's families, in the format the scraper's ``Accept`` asks for."""
    exporter: _Exporter = request.app.state.metrics_exporter
    # Reading backups, the quarantine folder and children's usage touches the disk (and the
    # first use imports prometheus_client): on a worker thread, off the event loop.
    body, content_type = await asyncio.to_thread(exporter.render, request.headers.get("accept", ""))
    return Response(body, media_type=content_type)


def install(app: FastAPI, state: DaemonState) -> Callable[[Scope, int, float], None]:
    """Serve ``/metrics`` from a registry of this app's own and have the home's database and
    vault count; return what the app's error boundary calls at each request's end (call
    after every route is added: route templates are read here)."""
    app.include_router(router)
    templates = {
        getattr(r, "endpoint", None): r.path
        for r in app.router.routes
        if getattr(r, "endpoint", None) is not None and hasattr(r, "path")
    }
    requests = RequestTally(templates)
    store = StoreTally()
    home = state.home
    home.db.tally = store
    vault = home.vault_tally = VaultTally()
    if home.vault_opened:  # otherwise attached when it opens (not opened here for it)
        home.vault.attach_tally(vault)
    exporter = app.state.metrics_exporter = _Exporter(state, requests, store, vault)
    _install_series(app, state, exporter)
    return requests.record


def _install_series(app: FastAPI, state: DaemonState, exporter: _Exporter) -> None:
    """``GET /v1/metrics/series`` from samples of the app's registry, taken by the daemon's
    scheduler every ``[api] metrics_sample_s`` (bastion/api/metrics_series.py)."""
    from bastion.api.metrics_series import MetricsSeries, read_sample
    from bastion.api.metrics_series import router as series_router
    from bastion.scheduler import Job

    interval = state.home.config.api.metrics_sample_s
    series = MetricsSeries(
        lambda ts, mono: read_sample(exporter.registry(), ts, mono), interval_s=interval
    )
    app.state.metrics_series = series
    app.include_router(series_router)
    if state.scheduler is not None:
        # The first sample a few seconds in (as db-sample's), not at once: it would import
        # prometheus_client on the scheduler's thread while the daemon starts, competing for
        # the interpreter (issue 22 §7). A request for the series takes a sample of its own
        # when the newest is older than the interval, so the page never waits for this one.
        state.scheduler.add(Job("metrics-sample", interval, series.sample, first_delay_s=5))
