"""The seed's "expose Prometheus metrics" and "health check HTTP endpoint", for the tray.

bastion's daemon has its own ``/metrics`` and ``/health``; the tray runs its supervisor in its
own process (no daemon), so it serves its figures itself, on loopback only:

    server = await StatusServer.start(tray)           # port 0: a free one
    GET http://127.0.0.1:{server.port}/metrics       # Prometheus text format
    GET http://127.0.0.1:{server.port}/health        # 200 {"status": "ok"} or 503 naming why
    await server.close()

``/metrics`` (``prometheus_client``'s exposition): per supervised service ``voice_tray_service_up``
(1 while running), ``voice_tray_service_ready`` (the readiness probe's verdict: 1, 0, or absent
when the service has none), ``voice_tray_service_restarts`` (in the restart window),
``voice_tray_service_breaker_trips_total`` and ``voice_tray_service_breaker_open``; the
database's rows per table (``voice_tray_rows``) and file size (``voice_tray_database_bytes``).
No secret is among them: names, states and counts only.

``/health``: 200 when every service is running and none is not-ready, else 503 with each
service's state and reason. The supervisor is asked on its own event loop (its state is the
loop's), the database from the server's thread (bastion's ``Database`` is thread-safe).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bastion.supervisor import ServiceStatus

if TYPE_CHECKING:
    from examples.voice_tray.app import VoiceTray

__all__ = ["StatusServer"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: How long a request waits for the supervisor's answer on its loop.
ASK_TIMEOUT_S = 10.0


class _TrayCollector(Collector):
    def __init__(self, server: StatusServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        statuses = self.server.statuses()
        up = GaugeMetricFamily(
            "voice_tray_service_up", "1 while the service runs", labels=["service"]
        )
        ready = GaugeMetricFamily(
            "voice_tray_service_ready", "the readiness probe's verdict", labels=["service"]
        )
        restarts = GaugeMetricFamily(
            "voice_tray_service_restarts", "restarts in the restart window", labels=["service"]
        )
        trips = CounterMetricFamily(
            "voice_tray_service_breaker_trips", "times the breaker opened", labels=["service"]
        )
        open_ = GaugeMetricFamily(
            "voice_tray_service_breaker_open", "1 while the breaker is open", labels=["service"]
        )
        for status in statuses:
            up.add_metric([status.name], 1.0 if status.state == "running" else 0.0)
            if status.ready is not None:
                ready.add_metric([status.name], 1.0 if status.ready else 0.0)
            restarts.add_metric([status.name], float(status.restarts_in_window))
            trips.add_metric([status.name], float(status.trips))
            open_.add_metric([status.name], 1.0 if status.breaker == "open" else 0.0)
        yield from (up, ready, restarts, trips, open_)
        stats = self.server.tray.db.get_statistics()
        rows = GaugeMetricFamily("voice_tray_rows", "rows per table", labels=["table"])
        for table, count in (
            ("logs", stats.log_count),
            ("profiles", stats.profile_count),
            ("transcriptions", stats.transcription_count),
            ("activity", stats.activity_count),
        ):
            rows.add_metric([table], float(count))
        yield rows
        yield GaugeMetricFamily(
            "voice_tray_database_bytes", "database file + WAL", value=float(stats.file_size_bytes)
        )


class StatusServer:
    """``/metrics`` and ``/health`` of a running :class:`VoiceTray` on 127.0.0.1."""

    def __init__(self, tray: VoiceTray, loop: asyncio.AbstractEventLoop, port: int) -> None:
        self.tray = tray
        self._loop = loop
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_TrayCollector(self))
        self._http = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._http.daemon_threads = True
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="voice_tray-status", daemon=True
        )

    @classmethod
    async def start(cls, tray: VoiceTray, port: int = 0) -> StatusServer:
        """Listen on ``127.0.0.1:port`` (0: a free port, see :attr:`port`)."""
        server = cls(tray, asyncio.get_running_loop(), port)
        server._thread.start()
        return server

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    def statuses(self) -> list[ServiceStatus]:
        """Every service's status, read on the supervisor's loop (from another thread)."""

        async def ask() -> list[ServiceStatus]:
            return self.tray.supervisor.list()

        return asyncio.run_coroutine_threadsafe(ask(), self._loop).result(ASK_TIMEOUT_S)

    def health(self) -> tuple[int, dict[str, Any]]:
        services = {
            s.name: {"state": s.state, "ready": s.ready, "reason": s.reason}
            for s in self.statuses()
        }
        ok = all(s["state"] == "running" and s["ready"] is not False for s in services.values())
        return (200 if ok else 503), {"status": "ok" if ok else "degraded", "services": services}

    async def close(self) -> None:
        """Stop listening (waits for the serving thread off the event loop)."""
        await asyncio.to_thread(self._http.shutdown)
        self._http.server_close()
        await asyncio.to_thread(self._thread.join, ASK_TIMEOUT_S)


def _handler(server: StatusServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "voice_tray-status/1"

        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, generate_latest(server.registry), CONTENT_TYPE)
            elif self.path == "/health":
                code, body = server.health()
                self._send(code, json.dumps(body).encode(), "application/json")
            else:
                self._send(404, b'{"error": "not found"}', "application/json")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a scrape every few seconds is not news

    return Handler
