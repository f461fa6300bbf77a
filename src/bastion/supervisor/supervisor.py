"""The ``Supervisor``: runs services by their specs and keeps them in the states of ``states.py``.

One asyncio task per active service drives the loop spawn -> watch -> decide:

- *watch*: the child's exit is awaited (event-driven: the kernel reports it, nothing polls),
  its probes run in a :class:`~bastion.supervisor.health.HealthMonitor`, its output goes
  through :class:`~bastion.supervisor.capture.LogCapture` into the ``logs`` table;
- *decide*: :mod:`~bastion.supervisor.policy` (pure) says restart after a backoff, open the
  breaker, stop, or fail.

Every transition is checked against the table, kept in memory for ``status``/``list``, and
written (service row + ``service.transition`` event, one write unit) by a single ordered
journal task so the event loop never blocks on the database. Breaker and restart history are
read back by :meth:`Supervisor.open`, which also sweeps the orphans of a crashed predecessor.

Secrets come through the :class:`SecretSource` protocol (``app.py`` adapts the vault to it);
they are resolved at each start, injected as env only, and redacted from captured output.
A source that also implements :class:`SecretWatch` (the vault does) is followed while
services run: when a secret a running service was started with is set, rotated or deleted
(by any process), the service reacts as its spec's ``on_secret_change`` says -- restarted
with the new value, signalled, or left alone -- and a deleted secret stops it, naming it
(see :meth:`Supervisor.check_secrets`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import random
import time
from collections.abc import Callable, Collection, Generator, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from bastion._lockfile import LockFile
from bastion.config import SupervisorConfig
from bastion.errors import BastionError, ServiceNotFound, SpawnFailed
from bastion.store import Database
from bastion.supervisor import _platform as plat
from bastion.supervisor import ownership
from bastion.supervisor import policy as pol
from bastion.supervisor._aio import within
from bastion.supervisor.capture import CapturedLine, LogCapture
from bastion.supervisor.health import HealthMonitor, McpStdioChannel, ProbeCheck
from bastion.supervisor.journal import EVENT_KIND, Journal, StoredService
from bastion.supervisor.process import (
    ChildProcess,
    ProcRecord,
    build_env,
    spawn,
    stop_child,
    sweep,
)
from bastion.supervisor.redact import Redactor
from bastion.supervisor.secret_follow import SecretFollower
from bastion.supervisor.spec import ServiceSpec
from bastion.supervisor.states import BreakerState, ServiceState, check_transition
from bastion.supervisor.tally import ServiceTally, ServiceView

__all__ = [
    "ChangeWatch",
    "SecretSource",
    "SecretWatch",
    "ServiceStatus",
    "Supervisor",
    "descendant_scan_pauses",
]

log = logging.getLogger(__name__)
S = ServiceState
_Events = list[Any]

#: A wall-vs-monotonic drift larger than this between two ticks means the machine slept.
CLOCK_JUMP_S = 2.0
#: When descendants are looked for after a spawn (seconds), then every DESCENDANT_EVERY_S,
#: doubling while a look finds nothing new, up to DESCENDANT_EVERY_MAX_S (a look walked every
#: process of the machine: with 10 quiet services, every 2 s cost the idle daemon ~1.5% of a
#: core, issue 22 §7; on Linux it now reads the service's own tree). A timer that stays: no
#: event says a service forked, and the cap bounds how long a descendant that left the group
#: can go unrecorded. What a look records only serves a later supervisor's sweep: a stop
#: looks once more itself, and on Linux the shim ends the whole tree if the daemon dies.
DESCENDANT_SCANS = (0.05, 0.2, 0.5, 1.0)
DESCENDANT_EVERY_S = 2.0
DESCENDANT_EVERY_MAX_S = 64.0


def descendant_scan_pauses() -> Generator[float, bool, None]:
    """The pauses before each look for a child's descendants: DESCENDANT_SCANS after the
    spawn, then DESCENDANT_EVERY_S, doubled after each look that found nothing new (up to
    DESCENDANT_EVERY_MAX_S) and back to DESCENDANT_EVERY_S after one that did. Send whether
    the last look found something new."""
    waited = 0.0
    for at in DESCENDANT_SCANS:
        yield at - waited
        waited = at
    every = DESCENDANT_EVERY_S
    while True:
        found = yield every
        every = DESCENDANT_EVERY_S if found else min(every * 2, DESCENDANT_EVERY_MAX_S)


#: How long to wait for pipes to reach EOF after the child's group is gone.
CAPTURE_DRAIN_S = 2.0
#: How long a child seen gone may take to have its exit reported (a bound, not a pause: the
#: report comes as soon as the child watcher reaps it).
EXIT_NOTICE_S = 5.0


class SecretSource(Protocol):
    """Where the supervisor gets secret values; ``app.py`` fills it with the vault.

    ``resolve`` returns the value or raises a ``BastionError`` subclass (e.g.
    ``SecretNotFound``) whose message names the secret, never its value.
    """

    def resolve(self, scope: str, name: str) -> str:
        """The value of ``scope/name`` for a child's environment (raise ``SecretNotFound`` if
        absent)."""


class ChangeWatch(Protocol):
    """Wake-ups when the secrets behind a :class:`SecretWatch` may have changed."""

    async def changed(self) -> None:
        """Return once something may have changed since the previous return."""

    def close(self) -> None:
        """Stop watching."""


#: (scope, name) of a secret.
SecretKey = tuple[str, str]


@runtime_checkable
class SecretWatch(Protocol):
    """A :class:`SecretSource` whose changes running services follow (``on_secret_change``).

    A *stamp* is whatever changes when a secret's value does (the vault: the fingerprint its
    index keeps, an HMAC of the value). It is read *before* the value, so a change landing
    between the two reads costs one restart too many, never a missed one.
    """

    def resolve(self, scope: str, name: str) -> str:
        """As :meth:`SecretSource.resolve`."""

    def resolve_stamped(self, scope: str, name: str) -> tuple[str, str]:
        """The value of ``scope/name`` and its stamp."""

    def stamps(self, keys: Collection[SecretKey]) -> dict[SecretKey, str | None]:
        """The current stamp of each secret (None: it no longer exists). Reads no value."""

    def watch(self) -> ChangeWatch:
        """Wake-ups when any secret may have changed (the caller compares stamps)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceStatus:
    """A snapshot of one service, as ``status``/``list`` and the API return it."""

    name: str
    state: str
    reason: str
    since: float
    pid: int | None
    ready: bool | None
    breaker: str
    attempt: int
    restarts_in_window: int
    trips: int
    next_start_at: float | None
    last_exit_code: int | None
    secret_names: tuple[str, ...]
    autostart: bool
    #: The latest result of each health probe of the running child (empty when not running).
    probes: tuple[ProbeCheck, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The status as JSON-ready data (secret names, never values)."""
        data = dataclasses.asdict(self)
        data["secret_names"] = list(self.secret_names)
        data["probes"] = [dataclasses.asdict(p) for p in self.probes]
        return data


_Statuses = list[ServiceStatus]
_Specs = list[ServiceSpec]
_Lines = list[CapturedLine]


@dataclasses.dataclass(eq=False)
class _Run:
    child: ChildProcess
    #: The ``supervisor_processes`` row id, once the background insert finished.
    process_id: asyncio.Task[int]
    unhealthy: asyncio.Future[str]
    capture: LogCapture | None = None
    channel: McpStdioChannel | None = None


@dataclasses.dataclass(eq=False)
class _Service:
    spec: ServiceSpec
    state: ServiceState = S.STOPPED
    reason: str = ""
    since: float = dataclasses.field(default_factory=time.time)
    policy: pol.PolicyState = dataclasses.field(default_factory=pol.PolicyState)
    #: What GET /metrics reads (transitions, probe latencies, log lines).
    tally: ServiceTally = dataclasses.field(default_factory=ServiceTally)
    run: _Run | None = None
    task: asyncio.Task[None] | None = None
    stop_requested: bool = False
    start_now: bool = False
    wake: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    ready: bool | None = None
    last_exit_code: int | None = None
    secret_names: tuple[str, ...] = ()
    next_start_at: float | None = None
    monitor: HealthMonitor | None = None
    #: Set by an in-place spec update: the running child's monitor is rebuilt.
    reprobe: bool = False
    #: The latest run's redactor: reasons and probe details can quote the child's output.
    redactor: Redactor | None = None
    #: The secrets the current run was given: env name -> (scope, name), value, stamp (None
    #: when not followed: no run, or a source without stamps).
    given: dict[str, tuple[SecretKey, str, str]] | None = None
    #: Values of the previous run that changed (env name, value): still redacted from the
    #: next run's output, then forgotten.
    retired: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    #: The (name, value) pairs ``redactor`` was built from.
    redacting: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    #: The reaction to a changed secret in progress (one at a time per service).
    secret_action: asyncio.Task[None] | None = None
    #: Why the current stop was asked for, when not by an operator (a deleted secret).
    stop_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.task is not None and not self.task.done()


class _Hooks:
    """The health monitor's callbacks for one run of one service."""

    def __init__(self, sup: Supervisor, svc: _Service, run: _Run) -> None:
        self.sup, self.svc, self.run = sup, svc, run

    def started(self, detail: str) -> None:
        if self.svc.state is S.STARTING:
            self.sup._set(self.svc, S.RUNNING, detail)  # STARTING -> RUNNING

    def healthy(self, detail: str) -> None:
        svc, spec = self.svc, self.svc.spec
        new, closed = pol.on_healthy(svc.policy, spec.breaker)
        changed = new != svc.policy
        svc.policy = new
        if closed and svc.state is S.HALF_OPEN:
            reason = f"breaker closed after {spec.breaker.success_threshold} healthy checks"
            self.sup._set(svc, S.RUNNING, reason)  # HALF_OPEN -> RUNNING
            return
        ran = time.monotonic() - self.run.child.started_mono
        if svc.policy.attempt and ran >= spec.restart.reset_after_s and svc.state is S.RUNNING:
            svc.policy = pol.on_stable(svc.policy)
            changed = True
        if changed:
            self.sup._save(svc)

    def settled(self) -> bool:
        policy = self.svc.policy
        return policy.breaker is not BreakerState.HALF_OPEN and not policy.attempt

    def unhealthy(self, role: str, detail: str) -> None:
        if not self.run.unhealthy.done():
            self.run.unhealthy.set_result(detail)

    def ready(self, ready: bool, detail: str) -> None:
        self.svc.ready = ready

    def probed(self, check: ProbeCheck, changed: bool) -> None:
        self.svc.tally.probed(check.role, check.kind, check.latency_ms / 1000)
        # Only a change of outcome is an event: a probe every second would drown the timeline.
        if changed:
            data = {k: getattr(check, k) for k in ("role", "kind", "ok", "detail", "latency_ms")}
            self.sup.emit("service.probe", self.svc.spec.name, data)


class Supervisor(SecretFollower):
    """Supervises services. ``await open()`` before use and ``await close()`` after.

    ``close`` stops running children (gracefully, per their ``[stop]``) but leaves breaker and
    restart history stored: a supervisor opened later resumes an OPEN breaker where it was.
    """

    def __init__(
        self,
        db: Database,
        specs: Iterable[ServiceSpec] = (),
        *,
        secrets: SecretSource | None = None,
        config: SupervisorConfig | None = None,
        daemon_env: Mapping[str, str] | None = None,
        backups_dir: Path | None = None,
        rng: random.Random | None = None,
        wall_clock: Callable[[], float] = time.time,
        clock_tick_s: float = 1.0,
        cgroup_mount: str | os.PathLike[str] | None = None,
    ) -> None:
        self._db = db
        #: Where discovery looks for cgroup2 (None: /proc/self/mountinfo says).
        self._cgroup_mount = cgroup_mount
        #: What discovery found at ``open`` (Linux cgroup v2, or why not).
        self.cgroups = plat.Cgroups(None, "the supervisor is not open yet")
        #: Why the last run that could not join its cgroup could not ("" when none failed).
        self.cgroup_problem = ""
        #: Only the sleep/wake watch reads these two; tests inject a wall clock that jumps.
        self._wall = wall_clock
        self._clock_tick_s = clock_tick_s
        #: Set when a health monitor starts: the sleep/wake watch may have something to do.
        self._clock_wake = asyncio.Event()
        self._journal = Journal(db)
        self._secrets = secrets
        self._cfg = config or SupervisorConfig()
        self._daemon_env = dict(os.environ if daemon_env is None else daemon_env)
        self._backups_dir = backups_dir
        self._rng = rng or random.Random()
        self._services: dict[str, _Service] = {}
        for spec in specs:
            self.add(spec)
        self._jqueue: asyncio.Queue[Callable[[], None]] | None = None
        self._jtask: asyncio.Task[None] | None = None
        self._clock_task: asyncio.Task[None] | None = None
        self._listeners: list[asyncio.Queue[dict[str, Any]]] = []
        self._logs: Any = None
        self.swept: list[ProcRecord] = []
        self._secret_watch: ChangeWatch | None = None
        self._secret_task: asyncio.Task[None] | None = None
        #: The supervisor lock, held from ``open`` to ``close`` (``ownership.py``).
        self._owner: LockFile | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def add(self, spec: ServiceSpec) -> None:
        """Register a service (before or after ``open``); a name can be added once."""
        if spec.name in self._services:
            raise ValueError(f"service {spec.name!r} is already registered")
        self._services[spec.name] = _Service(spec)

    async def open(self) -> None:
        """Take the supervisor lock of the database (:class:`~bastion.errors.SupervisorBusy`
        while another supervisor has it), then migrate the tables, restore stored state and
        sweep a crashed predecessor's orphans."""
        # Before the sweep: it kills what the records and the cgroup hold, which is a live
        # supervisor's children unless this lock says there is none.
        owner = await asyncio.to_thread(ownership.take, self._db.path)
        try:
            await self._open()
        except BaseException:
            owner.release()
            raise
        self._owner = owner

    async def _open(self) -> None:
        from bastion.domains.logs import LogsRepo

        self._logs = LogsRepo(self._db)
        self._jqueue = asyncio.Queue()
        await asyncio.to_thread(self._journal.migrate, self._backups_dir)
        stored = await asyncio.to_thread(self._journal.load)
        live = await asyncio.to_thread(self._journal.live_records)
        orphans: dict[str, int] = {}
        if self._cfg.cgroups == "off":
            self.cgroups = plat.Cgroups(None, "[supervisor] cgroups = 'off'")
        else:
            tag = plat.home_tag(self._db.path)
            self.cgroups = await asyncio.to_thread(
                plat.discover_cgroups, tag, mount=self._cgroup_mount
            )
        log.info("%s", self.cgroups.describe())
        if live:
            self.swept = await asyncio.to_thread(sweep, [rec for _id, _svc, rec in live])
            await asyncio.to_thread(self._journal.close_records, [i for i, _s, _r in live])
            # Whose they were: a recorded process, or a member of a recorded group.
            owner = {rec.pgid: name for _id, name, rec in live if rec.pgid}
            owner.update({rec.pid: name for _id, name, rec in live})
            for killed in self.swept:
                name = owner.get(killed.pid) or owner.get(killed.pgid, "")
                orphans[name] = orphans.get(name, 0) + 1
        # After the records (their pids and create times name what they kill): whatever is
        # still in this home's cgroups, an orphan no record names included.
        by_service, why = await asyncio.to_thread(plat.sweep_cgroups, self.cgroups)
        if why:
            log.warning("cgroup sweep: %s", why)
        known = {r.pid for r in self.swept}
        for name, pids in by_service.items():
            for pid in pids:
                if pid not in known:
                    self.swept.append(ProcRecord(pid, 0.0))
                    orphans[name] = orphans.get(name, 0) + 1
        if self.swept:
            data = {"killed": [dataclasses.asdict(r) for r in self.swept]}
            await asyncio.to_thread(self._journal.emit, "supervisor.swept", "supervisor", data)
        for name, row in stored.items():
            # Every stored row, registered or not: its history must not stop mid-run.
            now = await asyncio.to_thread(self._journal.settle, row, orphans.get(name, 0))
            svc = self._services.get(name)
            if svc is not None:
                svc.state, svc.reason, svc.since, svc.policy = (
                    now.state,
                    now.reason,
                    now.since,
                    now.policy,
                )
        self._jtask = asyncio.get_running_loop().create_task(self._journal_worker())
        self._clock_task = asyncio.get_running_loop().create_task(self._watch_clock())
        if isinstance(self._secrets, SecretWatch):
            self._secret_watch = await asyncio.to_thread(self._secrets.watch)
            self._secret_task = asyncio.get_running_loop().create_task(
                self._follow_secrets(self._secret_watch), name="secrets-watch"
            )

    async def start_all(self) -> None:
        """Start every ``autostart`` service; an OPEN breaker resumes its wait instead."""
        for svc in self._services.values():
            if not svc.spec.autostart or svc.active:
                continue
            if svc.state is S.OPEN:
                self._launch(svc, resume_open=True)
            elif svc.state is not S.FAILED:
                await self.start(svc.spec.name)

    async def close(self) -> None:
        """Stop every child; keep the breaker/restart history stored; release the lock."""
        try:
            await self._close()
        finally:
            # Last: every child is stopped and its end recorded, so the next supervisor
            # finds no live record of ours to sweep (and if stopping failed part-way, the
            # next one sweeps what is left, as after a crash).
            if self._owner is not None:
                self._owner.release()
                self._owner = None

    async def _close(self) -> None:
        if self._secret_task is not None:
            self._secret_task.cancel()
            await asyncio.gather(self._secret_task, return_exceptions=True)
            self._secret_task = None
        if self._secret_watch is not None:
            self._secret_watch.close()
            self._secret_watch = None
        actions = [s.secret_action for s in self._services.values() if s.secret_action]
        for action in actions:
            action.cancel()
        await asyncio.gather(*actions, return_exceptions=True)
        waiting = [
            s for s in self._services.values() if s.active and s.state in (S.BACKOFF, S.OPEN)
        ]
        for svc in waiting:
            assert svc.task is not None
            svc.task.cancel()
        await asyncio.gather(*(s.task for s in waiting if s.task), return_exceptions=True)
        await asyncio.gather(
            *(self.stop(name) for name, s in self._services.items() if s.active),
            return_exceptions=True,
        )
        if self._clock_task is not None:
            self._clock_task.cancel()
            await asyncio.gather(self._clock_task, return_exceptions=True)
        # Every service is stopped: this home's cgroup holds nothing of ours any more (what
        # it still holds escaped every stop, and ends here).
        why = await asyncio.to_thread(plat.release_cgroups, self.cgroups)
        if why:
            log.warning("cgroup release: %s", why)
        await self.flush()
        if self._jtask is not None:
            self._jtask.cancel()
            await asyncio.gather(self._jtask, return_exceptions=True)

    async def flush(self) -> None:
        """Wait until every queued state write has reached the database."""
        if self._jqueue is not None:
            await self._jqueue.join()

    # --- operations -----------------------------------------------------------------------

    def _get(self, name: str) -> _Service:
        try:
            return self._services[name]
        except KeyError:
            raise ServiceNotFound(
                f"no service named {name!r}", service=name, known=sorted(self._services)
            ) from None

    async def start(self, name: str) -> ServiceStatus:
        """Start ``name``; if it waits in BACKOFF or OPEN, start it now (an OPEN breaker is
        reset: the operator asked). Starting an active service changes nothing else."""
        svc = self._get(name)
        if svc.active:
            if svc.state in (S.BACKOFF, S.OPEN):
                svc.start_now = True
                svc.wake.set()
            return self.status(name)
        if svc.state is S.OPEN:
            svc.policy = pol.reset(svc.policy)
            self._set(svc, S.STARTING, "operator start: breaker reset")  # OPEN -> STARTING
        else:
            self._set(svc, S.STARTING, "start requested")  # STOPPED/FAILED -> STARTING
        self._launch(svc)
        return self.status(name)

    def _launch(self, svc: _Service, *, resume_open: bool = False) -> None:
        svc.stop_requested = False
        svc.stop_reason = None
        svc.start_now = False
        svc.wake.clear()
        svc.task = asyncio.get_running_loop().create_task(
            self._supervise(svc, resume_open=resume_open), name=f"supervise:{svc.spec.name}"
        )
        svc.task.add_done_callback(functools.partial(self._supervise_done, svc))

    def _supervise_done(self, svc: _Service, task: asyncio.Task[None]) -> None:
        # A bug in the loop must not leave a service looking alive: record it as FAILED.
        if task.cancelled() or task.exception() is None:
            return
        err = task.exception()
        log.error("supervisor loop of %s crashed", svc.spec.name, exc_info=err)
        svc.state, svc.since = S.FAILED, time.time()
        svc.reason = f"supervisor error: {type(err).__name__}"
        self._save(svc)

    async def stop(self, name: str) -> ServiceStatus:
        """Stop ``name`` (signal, grace, SIGKILL to the group) and wait until it is STOPPED."""
        svc = self._get(name)
        if svc.active:
            svc.stop_requested = True
            svc.wake.set()
            assert svc.task is not None
            await asyncio.gather(svc.task, return_exceptions=True)
        elif svc.state in (S.OPEN, S.FAILED):
            self._set(svc, S.STOPPED, "stop requested")
        return self.status(name)

    async def restart(self, name: str) -> ServiceStatus:
        """Stop the service (grace, then SIGKILL), then start it."""
        await self.stop(name)
        return await self.start(name)

    # --- specs changed while running (catalog.py decides; these carry it out) ---------------

    def spec(self, name: str) -> ServiceSpec:
        """The spec of service ``name``; ``ServiceNotFound`` if there is none."""
        return self._get(name).spec

    async def replace(self, spec: ServiceSpec, *, restart: bool) -> bool:
        """Swap the spec of a registered service; True if its child was restarted for it.

        ``restart``: the process itself changes (argv, env, secrets, cwd, pipes), so an
        active service is stopped and started again on the new spec. Otherwise the running
        child stays: restart, breaker and stop settings apply from the next decision, and a
        running child's probes are rebuilt from the new spec at once.
        """
        svc = self._get(spec.name)
        if restart and svc.active:
            await self.stop(spec.name)
            svc.spec = spec
            await self.start(spec.name)
            return True
        svc.spec = spec
        if svc.run is not None and svc.monitor is not None:
            svc.reprobe = True
            svc.wake.set()
        return False

    async def remove(self, name: str) -> None:
        """Stop ``name`` (by its stop policy) and forget it; its stored history stays."""
        await self.stop(name)
        del self._services[name]

    def emit(self, kind: str, subject: str, data: dict[str, Any]) -> None:
        """Store an event through the ordered journal (after the transitions queued before)."""
        self._enqueue(functools.partial(self._journal.emit, kind, subject, data))

    def views(self) -> list[ServiceView]:
        """Every service's state, child pid and counters, for a metrics scrape."""
        out = []
        # A scrape runs on a worker thread: iterate over a copy the event loop cannot grow.
        for name, svc in list(self._services.items()):
            tally, run = svc.tally, svc.run
            capture = run.capture if run is not None else None
            live = (capture.read, capture.stored, capture.dropped) if capture else (0, 0, 0)
            out.append(
                ServiceView(
                    name,
                    svc.state.value,
                    run.child.pid if run is not None else None,
                    tally,
                    tally.lines_read + live[0],
                    tally.lines_stored + live[1],
                    tally.lines_dropped + live[2],
                )
            )
        return out

    def status(self, name: str) -> ServiceStatus:
        """Service ``name``'s state, reason, pid (its program), breaker and probes."""
        svc = self._get(name)
        now = time.time()
        window = svc.spec.restart.window_s
        child = svc.run.child if svc.run else None
        return ServiceStatus(
            name=name,
            state=svc.state.value,
            reason=svc.reason,
            since=svc.since,
            pid=child.program_pid if child and child.returncode is None else None,
            ready=svc.ready,
            breaker=svc.policy.breaker.value,
            attempt=svc.policy.attempt,
            restarts_in_window=sum(1 for t in svc.policy.restarts if now - t < window),
            trips=svc.policy.trips,
            next_start_at=svc.next_start_at if svc.state in (S.BACKOFF, S.OPEN) else None,
            last_exit_code=svc.last_exit_code,
            secret_names=svc.secret_names,
            autostart=svc.spec.autostart,
            probes=svc.monitor.checks()
            if svc.monitor is not None and child is not None and child.returncode is None
            else (),
        )

    def list(self) -> _Statuses:
        """Every service's status, by name."""
        return [self.status(name) for name in sorted(self._services)]

    def specs(self) -> _Specs:
        """Every service's spec, by name."""
        return [self._services[name].spec for name in sorted(self._services)]

    async def events(self, name: str, limit: int = 100) -> _Events:
        """The last ``limit`` stored events of ``name`` (``Event``), oldest first."""
        from bastion.domains.events import EventsRepo

        self._get(name)
        await self.flush()
        repo = EventsRepo(self._db)
        page = await asyncio.to_thread(
            lambda: repo.query(subject=name, limit=limit, newest_first=True)
        )
        return list(reversed(page.items))

    def subscribe(self, maxsize: int = 1000) -> asyncio.Queue[dict[str, Any]]:
        """A queue receiving every transition as a dict (for SSE); drops when full."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)
        self._listeners.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop sending transitions to ``queue``."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(queue)

    async def wait_state(
        self, name: str, *states: ServiceState, timeout: float = 30.0
    ) -> ServiceStatus:
        """Wait until ``name`` enters one of ``states`` (or is in one now); TimeoutError after.

        Event-driven: it follows the transition stream, so a state held only for an instant
        (UNHEALTHY on the way to STOPPING) is still seen.
        """
        svc = self._get(name)
        if svc.state in states:
            return self.status(name)
        wanted = {s.value for s in states}
        queue = self.subscribe(maxsize=0)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = await queue.get()
                    if event["service"] == name and event["to"] in wanted:
                        return self.status(name)
        finally:
            self.unsubscribe(queue)

    # --- transitions and the journal --------------------------------------------------------

    def _set(self, svc: _Service, target: ServiceState, reason: str, **extra: Any) -> None:
        old = svc.state
        check_transition(old, target, service=svc.spec.name)
        if svc.redactor is not None:
            reason = svc.redactor.redact_text(reason)
        svc.state, svc.reason, svc.since = target, reason, time.time()
        svc.tally.transitions[(old.value, target.value)] += 1
        snap = StoredService(svc.spec.name, target, reason, svc.since, svc.policy)
        self._enqueue(lambda: self._journal.transition(snap, old, extra or None))
        event = {
            "kind": EVENT_KIND,
            "service": svc.spec.name,
            "from": old.value,
            "to": target.value,
            "reason": reason,
            "ts": svc.since,
            **extra,
        }
        for queue in self._listeners:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    def _save(self, svc: _Service) -> None:
        snap = StoredService(svc.spec.name, svc.state, svc.reason, svc.since, svc.policy)
        self._enqueue(lambda: self._journal.save(snap))

    def _enqueue(self, fn: Callable[[], None]) -> None:
        if self._jqueue is None:
            raise RuntimeError("Supervisor.open() was not awaited")
        self._jqueue.put_nowait(fn)

    async def _journal_worker(self) -> None:
        assert self._jqueue is not None
        while True:
            fn = await self._jqueue.get()
            try:
                await asyncio.to_thread(fn)
            except BastionError:
                # The store refused a state write (disk full, closed). Supervision goes on;
                # the in-memory state stays right and the next write may succeed.
                log.exception("supervisor: could not store a state change")
            finally:
                self._jqueue.task_done()

    def _timed_probes_running(self) -> bool:
        """Whether a running health monitor has a probe on a timer (a declared startup,
        liveness or readiness probe). The default liveness is not one: it waits for the
        process's exit, an event a sleep of the machine cannot make stale."""
        return any(
            svc.monitor is not None
            and (svc.spec.health.startup or svc.spec.health.liveness or svc.spec.health.readiness)
            for svc in self._services.values()
        )

    async def _watch_clock(self) -> None:
        # Sleep/wake: the monotonic clock stops while the machine sleeps, the wall clock
        # does not. A jump between them means every probe result is stale: probe now.
        # It looks every clock_tick_s -- which bounds how stale a probe result can be after
        # a wake -- only while some probe runs on a timer; with none (services on the
        # default liveness only, issue 22 §7) nothing can be stale and it sleeps until a
        # monitor starts, measuring the drift afresh then (a jump meanwhile staled nothing;
        # the clock_jump event is recorded only for jumps that could).
        drift = self._wall() - time.monotonic()
        while True:
            if not self._timed_probes_running():
                self._clock_wake.clear()
                await self._clock_wake.wait()
                drift = self._wall() - time.monotonic()
                continue
            await asyncio.sleep(self._clock_tick_s)
            now_drift = self._wall() - time.monotonic()
            if abs(now_drift - drift) > CLOCK_JUMP_S:
                for svc in self._services.values():
                    if svc.monitor is not None:
                        svc.monitor.poke()
                data = {"jump_s": now_drift - drift}
                self._enqueue(
                    functools.partial(
                        self._journal.emit, "supervisor.clock_jump", "supervisor", data
                    )
                )
            drift = now_drift

    # --- the per-service loop ---------------------------------------------------------------

    async def _pause(self, svc: _Service, delay: float) -> str:
        """Wait ``delay`` unless stopped or started early: 'stop', 'now' or 'elapsed'."""
        svc.wake.clear()
        if not svc.stop_requested and not svc.start_now:
            with contextlib.suppress(TimeoutError):
                await within(svc.wake.wait(), max(delay, 0.0))
        if svc.stop_requested:
            return "stop"
        if svc.start_now:
            svc.start_now = False
            return "now"
        return "elapsed"

    async def _supervise(self, svc: _Service, *, resume_open: bool = False) -> None:
        # svc.spec is read at each decision, not once: a reloaded spec's restart and
        # breaker settings apply from the next decision on (catalog.py, in place).
        phase = "open" if resume_open else "start"
        while True:
            if phase == "open":
                until = svc.policy.open_until() or time.time()
                svc.next_start_at = until
                outcome = await self._pause(svc, until - time.time())
                svc.next_start_at = None
                if outcome == "stop":
                    self._set(svc, S.STOPPED, "stop requested")  # OPEN -> STOPPED
                    return
                if outcome == "now":
                    svc.policy = pol.reset(svc.policy)
                    self._set(svc, S.STARTING, "operator start: breaker reset")  # OPEN -> STARTING
                else:
                    svc.policy = pol.on_open_elapsed(svc.policy)
                    self._set(svc, S.HALF_OPEN, "open timeout elapsed: one trial start")
            exit_ok = await self._run_once(svc)
            if exit_ok is None:
                return
            svc.policy, decision = pol.on_failure(
                svc.policy,
                svc.spec.restart,
                svc.spec.breaker,
                now=time.time(),
                exit_ok=exit_ok,
                rng=self._rng,
            )
            action = decision.action
            if action is pol.Action.STOP:
                self._set(svc, S.STOPPED, decision.reason)  # EXITED -> STOPPED
                return
            if action is pol.Action.FAIL:
                self._set(svc, S.FAILED, decision.reason)  # EXITED/STOPPING -> FAILED
                return
            if action is pol.Action.OPEN:
                self._set(svc, S.OPEN, decision.reason, open_s=decision.delay)
                phase = "open"
                continue
            # EXITED/STOPPING -> BACKOFF -> STARTING
            self._set(svc, S.BACKOFF, decision.reason, delay_s=round(decision.delay, 4))
            svc.next_start_at = time.time() + decision.delay
            outcome = await self._pause(svc, decision.delay)
            svc.next_start_at = None
            if outcome == "stop":
                self._set(svc, S.STOPPED, "stop requested")  # BACKOFF -> STOPPED
                return
            self._set(
                svc,
                S.STARTING,
                "backoff delay elapsed" if outcome == "elapsed" else "start requested",
            )
            phase = "start"

    def _resolve_secrets(
        self, spec: ServiceSpec
    ) -> tuple[dict[str, str], dict[str, tuple[SecretKey, str, str]] | None]:
        """The env values of ``spec``'s secrets, and what was given (with stamps) when the
        source can be followed."""
        if not spec.secrets:
            return {}, ({} if isinstance(self._secrets, SecretWatch) else None)
        if self._secrets is None:
            raise SpawnFailed(
                f"service {spec.name!r} declares secrets but the supervisor has no secret source",
                hint="Run it under `bastion serve`/`services run`, which wire the vault in.",
            )
        source = self._secrets
        if not isinstance(source, SecretWatch):
            values = {env: source.resolve(ref.scope, ref.name) for env, ref in spec.secrets.items()}
            return values, None
        given: dict[str, tuple[SecretKey, str, str]] = {}
        for env, ref in spec.secrets.items():
            value, stamp = source.resolve_stamped(ref.scope, ref.name)
            given[env] = ((ref.scope, ref.name), value, stamp)
        return {env: value for env, (_key, value, _stamp) in given.items()}, given

    async def _run_once(self, svc: _Service) -> bool | None:
        """One child's life. True/False: it exited (cleanly or not) or was killed as
        unhealthy; None: stopped on request or could not be spawned (state already set)."""
        spec = svc.spec
        retired, svc.retired = svc.retired, []
        try:
            values, given = await asyncio.to_thread(self._resolve_secrets, spec)
            # Built before the spawn: a value too short to redact is refused (SecretTooShort).
            # Values a secret had before it changed are redacted too: a child may still
            # print the old one (a cache, a log of the rotation).
            pairs = [*values.items(), *((n, v) for n, v in retired if v not in values.values())]
            svc.redactor = await asyncio.to_thread(Redactor, pairs)  # compiles: off the loop
            svc.redacting = pairs
        except BastionError as err:
            # A missing secret will not come back by restarting in a loop.
            self._set(svc, S.FAILED, err.message, code=err.code)  # STARTING -> FAILED
            return None
        except Exception as err:
            # A SecretSource broke its contract (not a BastionError). Its message may quote
            # what it was given, so only the type is kept.
            log.error("service %s: secret source failed with %s", spec.name, type(err).__name__)
            self._set(svc, S.FAILED, f"secret source failed: {type(err).__name__}")
            return None
        try:
            # spawn() raises only when no program runs (SpawnFailed: missing, not
            # executable, bad cwd). A program that exits at once -- even before spawn
            # returns -- has run: its exit comes through child.exited below and goes to
            # the restart policy like any other.
            child = await spawn(
                spec,
                build_env(spec, self._daemon_env, values),
                parent_death=self._cfg.parent_death,
                cgroups=self.cgroups,
            )
        except BastionError as err:
            # A missing program will not come back by restarting in a loop.
            self._set(svc, S.FAILED, err.message, code=err.code)  # STARTING -> FAILED
            return None
        if child.cgroup_problem and child.cgroup_problem != self.cgroup_problem:
            # Once per cause: a refusal that holds for one run holds for the next.
            log.warning("service %s runs without a cgroup: %s", spec.name, child.cgroup_problem)
        self.cgroup_problem = child.cgroup_problem or self.cgroup_problem
        svc.secret_names = tuple(sorted(values))
        svc.given = given
        svc.ready = None
        # Recorded in the background: probes start at once; whoever needs the row id
        # (descendant scan, the end of the run) awaits it.
        process_id = asyncio.get_running_loop().create_task(
            asyncio.to_thread(self._record_start, spec.name, child, svc.secret_names)
        )
        run = _Run(child, process_id, asyncio.get_running_loop().create_future())
        svc.run = run
        proc = child.process
        if spec.logs.capture:
            levels = {"stdout": spec.logs.stdout_level, "stderr": spec.logs.stderr_level}
            run.capture = LogCapture(
                self._sink(spec.name),
                svc.redactor,
                levels=levels,
                batch_lines=self._cfg.log_batch_lines,
                batch_ms=self._cfg.log_batch_ms,
                buffer_lines=self._cfg.log_buffer_lines,
                line_max_bytes=self._cfg.log_line_max_bytes,
            )
            if proc.stderr is not None:
                run.capture.attach("stderr", proc.stderr)
            if proc.stdout is not None and not spec.stdio_probe:
                run.capture.attach("stdout", proc.stdout)
        if spec.stdio_probe and proc.stdin is not None and proc.stdout is not None:
            run.channel = McpStdioChannel(proc.stdin, proc.stdout)
        svc.monitor = self._monitor(svc, run)
        loop = asyncio.get_running_loop()
        monitor_task = self._start_monitor(svc, run)
        scan_task = loop.create_task(self._scan_descendants(spec.name, run))
        exited = child.exited  # event-driven: resolved by the child watcher, pipes or not
        stop_wait = loop.create_task(svc.wake.wait())
        try:
            while True:
                waitables: set[asyncio.Future[Any]] = {exited, stop_wait, run.unhealthy}
                await asyncio.wait(waitables, return_when=asyncio.FIRST_COMPLETED)
                if svc.stop_requested or exited.done() or run.unhealthy.done():
                    break
                if svc.reprobe:
                    # The spec's probes changed in place (a reload): same child, new monitor.
                    svc.reprobe = False
                    monitor_task.cancel()
                    await asyncio.gather(monitor_task, return_exceptions=True)
                    svc.monitor = self._monitor(svc, run)
                    monitor_task = self._start_monitor(svc, run)
                svc.wake.clear()  # a start_now while running means nothing
                stop_wait = loop.create_task(svc.wake.wait())
        finally:
            monitor_task.cancel()
            scan_task.cancel()
            stop_wait.cancel()
            await asyncio.gather(monitor_task, scan_task, stop_wait, return_exceptions=True)
            svc.monitor = None

        if not svc.stop_requested and not exited.done() and child.gone():
            # A probe failed because the child is gone and its exit is on the way (the child
            # watcher has yet to report it): an exit wins over a probe that failed because
            # of it, so wait for the status instead of calling the child unhealthy.
            with contextlib.suppress(TimeoutError):
                await within(asyncio.shield(exited), EXIT_NOTICE_S)
        result: bool | None
        if svc.stop_requested:
            why = svc.stop_reason
            self._set(svc, S.STOPPING, why or "stop requested", pid=child.program_pid)
            stopped = await stop_child(child, svc.spec.stop)
            await self._finish_run(svc, run, stopped.returncode)
            how = "SIGKILL after grace" if stopped.killed else svc.spec.stop.signal
            # STOPPING -> STOPPED
            self._set(svc, S.STOPPED, f"{why} (stopped by {how})" if why else f"stopped ({how})")
            result = None
        elif exited.done():
            # An exit wins over a probe that failed because of it.
            code = exited.result()
            reason = f"exited with status {code}" if code >= 0 else f"killed by signal {-code}"
            self._set(svc, S.EXITED, reason, pid=child.program_pid, exit_code=code)
            # Whatever the child left in its group or tree is part of the dead service.
            await stop_child(child, svc.spec.stop)
            await self._finish_run(svc, run, code)
            result = code == 0
        else:
            self._set(svc, S.UNHEALTHY, run.unhealthy.result(), pid=child.program_pid)
            self._set(svc, S.STOPPING, "stopping the unhealthy child for a restart")
            stopped = await stop_child(child, svc.spec.stop)
            await self._finish_run(svc, run, stopped.returncode)
            result = False
        return result

    def _start_monitor(self, svc: _Service, run: _Run) -> asyncio.Task[None]:
        """Run ``svc.monitor``; a monitor that dies of an error ends the run as unhealthy.

        The monitor is the only thing that moves a run out of ``starting`` and judges it
        afterwards: if it died silently (a bug in a probe or a hook), the service would sit
        in ``starting`` (or look healthy) forever with nobody checking it. Failing the run
        hands it to the restart policy, so a monitor that keeps failing trips the breaker
        where an operator sees it, with the error as the reason.
        """
        assert svc.monitor is not None
        task = asyncio.get_running_loop().create_task(svc.monitor.run())

        def ended(done: asyncio.Task[None]) -> None:
            if done.cancelled() or done.exception() is None or run.unhealthy.done():
                return
            err = done.exception()
            while isinstance(err, BaseExceptionGroup) and err.exceptions:
                err = err.exceptions[0]  # the TaskGroup's first failure is the cause
            text = f"health monitor failed: {type(err).__name__}: {err}"
            redact = svc.redactor.redact_text if svc.redactor is not None else str
            log.error("%s: %s", svc.spec.name, redact(text))
            run.unhealthy.set_result(redact(text))

        task.add_done_callback(ended)
        return task

    def _monitor(self, svc: _Service, run: _Run) -> HealthMonitor:
        health = svc.spec.health
        if svc.state is not S.STARTING and svc.monitor is not None:
            # A monitor replaced after start-up: the child already passed its startup gate.
            health = dataclasses.replace(health, startup=None)
        env = build_env(svc.spec, self._daemon_env, {})
        self._clock_wake.set()  # the sleep/wake watch looks whether it has probes to watch
        return HealthMonitor(
            health,
            run.child,
            _Hooks(self, svc, run),
            stdio=run.channel,
            env=env,
            redact=svc.redactor.redact_text if svc.redactor is not None else str,
        )

    def _record_start(self, name: str, child: ChildProcess, secret_names: tuple[str, ...]) -> int:
        row_id = self._journal.record_start(name, child.record, child.started_at, secret_names)
        if child.program is not None and child.program != child.record:
            # The shim leads the group; its program is recorded at once, like a descendant,
            # so a successor's sweep finds it even if it leaves the group (and `services
            # list` shows its pid, as status().pid does).
            self._journal.record_program(name, row_id, child.program, child.started_at)
        return row_id

    async def _finish_run(self, svc: _Service, run: _Run, code: int | None) -> None:
        svc.last_exit_code = code
        svc.ready = None
        svc.given = None  # nothing runs on these values any more: nothing to follow
        if run.channel is not None:
            await run.channel.close()
        if run.capture is not None:
            # The group is gone; a pipe still open after CAPTURE_DRAIN_S is held by something
            # outside it, so stop reading then, but store everything read so far.
            await run.capture.close(eof_timeout=CAPTURE_DRAIN_S)
            tally = svc.tally
            tally.lines_read += run.capture.read
            tally.lines_stored += run.capture.stored
            tally.lines_dropped += run.capture.dropped
        svc.run = None
        row_id = await asyncio.shield(run.process_id)
        await asyncio.to_thread(self._journal.record_end, row_id, code)

    async def _scan_descendants(self, name: str, run: _Run) -> None:
        # Descendants are recorded (pid + create time) so a later supervisor can kill them
        # even if they left the process group (setsid) and this process crashed.
        schedule = descendant_scan_pauses()
        pause = next(schedule)
        while True:
            await asyncio.sleep(pause)
            new = await asyncio.to_thread(run.child.observe_descendants)
            pause = schedule.send(bool(new))
            if new:
                row_id = await asyncio.shield(run.process_id)
                await asyncio.to_thread(self._journal.record_descendants, name, row_id, new)

    def _sink(self, source: str) -> Callable[[_Lines], Any]:
        from bastion.domains.logs import LogRecord

        logs = self._logs

        def store(batch: _Lines) -> None:
            logs.insert_batch(
                [LogRecord(c.ts, c.level, source, c.stream, c.message) for c in batch]
            )

        async def sink(batch: _Lines) -> None:
            await asyncio.to_thread(store, batch)

        return sink
