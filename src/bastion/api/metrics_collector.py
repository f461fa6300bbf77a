"""The daemon's Prometheus families, read from its plain counters when a scrape (or a sample
of the dashboard's series) comes.

Split from :mod:`bastion.api.metrics` so that ``prometheus_client`` (~30 ms to import, with
gzip, wsgiref and http.server behind it) and psutil load with the first scrape or sample, not
before ``bastion serve``'s handshake (issue 22 §7): the counting the daemon does from its
start needs neither.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from bastion._tally import Buckets, VaultTally
from bastion.store.tally import StoreTally
from bastion.supervisor.states import ServiceState

if TYPE_CHECKING:
    from bastion.api.metrics import RequestTally
    from bastion.api.state import DaemonState

__all__ = ["BastionCollector", "new_registry", "render"]


def new_registry(
    state: DaemonState, requests: RequestTally, store: StoreTally, vault: VaultTally
) -> CollectorRegistry:
    """One registry of this app's own (two daemons in one process never share a figure),
    each part of the collector registered on its own."""
    registry = CollectorRegistry(auto_describe=False)
    for part, described in BastionCollector(state, requests, store, vault).parts():
        registry.register(_Part(part, described))
    return registry


def render(registry: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """The registry's families in the format ``accept`` asks for, and its content type.
    An ``Accept`` prometheus_client cannot read gets the text format, as one it does not
    know does (it compares an OpenMetrics ``version=`` as numbers: ``version=abc`` raised
    TypeError, a 500 for a header any client may send)."""
    try:
        encoder, content_type = choose_encoder(accept)
    except (TypeError, ValueError):
        encoder, content_type = choose_encoder("")
    return encoder(registry), content_type


def _histogram(
    name: str, doc: str, labels: list[str], series: Iterable[tuple[list[str], Buckets]]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for values, buckets in series:
        family.add_metric(values, buckets.cumulative(), buckets.total)
    return family


class BastionCollector(Collector):
    """Reads the daemon's counters and state at scrape time."""

    def __init__(
        self, state: DaemonState, requests: RequestTally, store: StoreTally, vault: VaultTally
    ) -> None:
        self.state = state
        self.requests = requests
        self.store = store
        self.vault = vault

    def collect(self) -> Iterator[Metric]:
        for part, _ in self.parts():
            yield from part()

    def parts(self) -> list[tuple[Callable[[], Iterator[Metric]], bool]]:
        """The collector's parts, each registered on its own, and whether it runs in memory
        only (then it is described, so a ``restricted_registry`` can pick it alone: the
        dashboard's series samples those without touching the disk or psutil)."""
        return [
            (self._api, True),
            (self._store, True),
            (self._store_files, False),
            (self._services, True),
            (self._children, False),
            (self._vault, True),
        ]

    def _vault(self) -> Iterator[Metric]:
        tally = self.vault
        for name, doc, counter in (
            ("bastion_vault_gets", "Secret values read, by backend.", tally.gets),
            ("bastion_vault_sets", "Secret values stored, by backend.", tally.sets),
        ):
            family = CounterMetricFamily(name, doc, labels=["backend"])
            for backend, n in sorted(counter.items()):
                family.add_metric([backend], n)
            yield family
        errors = CounterMetricFamily(
            "bastion_vault_errors",
            "Vault reads and writes that failed, by error.",
            labels=["error"],
        )
        for error, n in sorted(tally.errors.items()):
            errors.add_metric([error], n)
        yield errors
        yield _histogram(
            "bastion_vault_keychain_duration_seconds",
            "Time each call into the OS keychain took.",
            [],
            [([], tally.keychain_s)],
        )

    def _api(self) -> Iterator[Metric]:
        tally = self.requests
        family = CounterMetricFamily(
            "bastion_api_requests",
            "HTTP requests answered, by method, route template and status.",
            labels=["method", "route", "status"],
        )
        series = [([m, r, str(s)], b) for (m, r, s), b in list(tally.requests.items())]
        for labels, buckets in series:
            family.add_metric(labels, buckets.count)
        yield family
        yield _histogram(
            "bastion_api_request_duration_seconds",
            "Time from a request passing the security checks to its response's end.",
            ["method", "route", "status"],
            series,
        )
        rejected = CounterMetricFamily(
            "bastion_api_rejected",
            "Requests refused by the security checks (Host, Origin, token, body), by reason.",
            labels=["reason"],
        )
        for reason, n in sorted(self.state.counters.rejected.items()):
            rejected.add_metric([reason], n)
        yield rejected

    def _store(self) -> Iterator[Metric]:
        tally = self.store
        yield CounterMetricFamily(
            "bastion_store_commits", "Write transactions committed.", value=tally.commits
        )
        yield _histogram(
            "bastion_store_commit_duration_seconds",
            "Time the COMMIT statement took.",
            [],
            [([], tally.commit_s)],
        )
        yield _histogram(
            "bastion_store_group_commit_units",
            "Write units committed in one transaction (group commit).",
            [],
            [([], tally.units_per_commit())],
        )
        yield CounterMetricFamily(
            "bastion_store_busy",
            "Write transactions refused after the busy timeout (another process held the lock).",
            value=tally.busy,
        )
        yield CounterMetricFamily(
            "bastion_store_writer_waits",
            "In-process writers that waited past the fairness bound for the writer.",
            value=tally.starved,
        )
        checkpoints = CounterMetricFamily(
            "bastion_store_checkpoints",
            "WAL checkpoints bastion ran (archiver, watchdog, retention), by mode.",
            labels=["mode"],
        )
        for mode, n in sorted(tally.checkpoints.items()):
            checkpoints.add_metric([mode], n)
        yield checkpoints

    def _store_files(self) -> Iterator[Metric]:
        home = self.state.home
        cfg = home.config
        wal = GaugeMetricFamily("bastion_store_wal_bytes", "Size of bastion.db's WAL file.")
        with contextlib.suppress(Exception):  # closing: report what can be read
            wal.add_metric([], home.db.file_sizes().get("wal", 0))
        yield wal
        age = GaugeMetricFamily(
            "bastion_store_backup_age_seconds",
            "Seconds since the newest backup of each database file.",
            labels=["database"],
        )
        from bastion.store.backup import list_backups

        newest: dict[str, float] = {}
        for info in list_backups(cfg.backups_dir):
            stamp = info.created_at.timestamp()
            newest[info.db_name] = max(newest.get(info.db_name, 0.0), stamp)
        now = time.time()
        for name, stamp in sorted(newest.items()):
            age.add_metric([name], max(0.0, now - stamp))
        yield age
        qdir = cfg.quarantine_dir
        count = sum(1 for _ in qdir.iterdir()) if qdir.is_dir() else 0
        yield GaugeMetricFamily(
            "bastion_store_quarantined",
            "Entries in <home>/quarantine (databases moved aside by recovery or restore).",
            value=count,
        )

    def _services(self) -> Iterator[Metric]:
        sup = self.state.supervisor
        views = sup.views() if sup is not None else []
        states = GaugeMetricFamily(
            "bastion_service_state",
            "1 for the state each service is in, 0 for the others (a state set).",
            labels=["service", "state"],
        )
        restarts = CounterMetricFamily(
            "bastion_service_restarts",
            "Starts after a failure's backoff delay (backoff -> starting).",
            labels=["service"],
        )
        trips = CounterMetricFamily(
            "bastion_service_breaker_trips",
            "Times the service's circuit breaker opened.",
            labels=["service"],
        )
        transitions = CounterMetricFamily(
            "bastion_service_transitions",
            "State transitions made, by service, from and to.",
            labels=["service", "from", "to"],
        )
        lines = CounterMetricFamily(
            "bastion_service_log_lines",
            "Output lines of the service's children: read, stored, dropped.",
            labels=["service", "outcome"],
        )
        probe_series: list[tuple[list[str], Buckets]] = []
        for view in views:
            for state in ServiceState:
                states.add_metric([view.name, state.value], 1.0 if state.value == view.state else 0)
            tally = view.tally
            restarts.add_metric([view.name], tally.restarts)
            trips.add_metric([view.name], tally.breaker_trips)
            for (old, new), n in list(tally.transitions.items()):
                transitions.add_metric([view.name, old, new], n)
            lines.add_metric([view.name, "read"], view.lines_read)
            lines.add_metric([view.name, "stored"], view.lines_stored)
            lines.add_metric([view.name, "dropped"], view.lines_dropped)
            for (role, kind), buckets in list(tally.probe_s.items()):
                probe_series.append(([view.name, role, kind], buckets))
        yield from (states, restarts, trips, transitions, lines)
        yield _histogram(
            "bastion_service_probe_duration_seconds",
            "Time each health probe run took, by service, role and kind.",
            ["service", "role", "kind"],
            probe_series,
        )

    def _children(self) -> Iterator[Metric]:
        sup = self.state.supervisor
        views = sup.views() if sup is not None else []
        rss = GaugeMetricFamily(
            "bastion_service_resident_bytes",
            "Resident memory of the service's child (its program).",
            labels=["service"],
        )
        cpu = CounterMetricFamily(
            "bastion_service_cpu_seconds",
            "CPU time (user + system) of the service's current child.",
            labels=["service"],
        )
        for view in views:
            if view.pid is not None:
                _child_usage(view.name, view.pid, rss, cpu)
        yield from (rss, cpu)


class _Part(Collector):
    """One part of :class:`BastionCollector`, registered on its own."""

    def __init__(self, collect: Callable[[], Iterator[Metric]], described: bool) -> None:
        self._collect = collect
        self._described = described

    def collect(self) -> Iterator[Metric]:
        return self._collect()

    def describe(self) -> list[Metric]:
        """The families' names and types (run once, when registered), or none for a part
        that reads the disk or other processes: only a full scrape runs those."""
        if not self._described:
            return []
        return [Metric(m.name, m.documentation, m.type) for m in self._collect()]


def _child_usage(name: str, pid: int, rss: GaugeMetricFamily, cpu: CounterMetricFamily) -> None:
    import psutil

    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            memory = proc.memory_info().rss
            times = proc.cpu_times()
    except (psutil.Error, OSError):  # it exited between the listing and now
        return
    rss.add_metric([name], memory)
    cpu.add_metric([name], times.user + times.system)
