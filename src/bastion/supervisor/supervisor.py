"""The ``Supervisor``: runs services by their specs and keeps them in the states of ``states.py``.

One asyncio task per active service drives the loop spawn -> watch -> decide (``run.py``):

- *watch*: the child's exit is awaited (event-driven: the kernel reports it, nothing polls),
  its probes run in a :class:`~bastion.supervisor.health.HealthMonitor`, its output goes
  through :class:`~bastion.supervisor.capture.LogCapture` into the ``logs`` table;
- *decide*: :mod:`~bastion.supervisor.policy` (pure) says restart after a backoff, open the
  breaker, stop, or fail.

This module holds the services and everything that is not one service's loop: ``open``
and ``close``, the operator's operations, the answers (status, list, events, the transition
stream), and the transitions themselves. Every transition is checked against the table, kept
in memory for ``status``/``list``, and written (service row + ``service.transition`` event,
one write unit) by a single ordered journal task so the event loop never blocks on the
database. Breaker and restart history are read back by :meth:`Supervisor.open`, which also
sweeps the orphans of a crashed predecessor.

Secrets come through the :class:`SecretSource` protocol (``app.py`` adapts the vault to it);
they are resolved at each start, injected as env only, and redacted from captured output.
A source that also implements :class:`SecretWatch` (the vault does) is followed while
services run: when a secret a running service was started with is set, rotated or deleted
(by any process), the service reacts as its spec's ``on_secret_change`` says -- restarted
with the new value, signalled, or left alone -- and a deleted secret stops it, naming it
(see :meth:`Supervisor.check_secrets`, ``secret_follow.py``).
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
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from bastion._lockfile import LockFile
from bastion.config import SupervisorConfig
from bastion.errors import BastionError, ServiceNotFound
from bastion.store import Database
from bastion.supervisor import _platform as plat
from bastion.supervisor import ownership
from bastion.supervisor import policy as pol
from bastion.supervisor.journal import EVENT_KIND, Journal, StoredService
from bastion.supervisor.process import ProcRecord, sweep
from bastion.supervisor.run import ServiceRunner, descendant_scan_pauses
from bastion.supervisor.secret_follow import (
    ChangeWatch,
    SecretFollower,
    SecretSource,
    SecretWatch,
)
from bastion.supervisor.service import ServiceStatus, _Service
from bastion.supervisor.spec import ServiceSpec
from bastion.supervisor.states import ServiceState, check_transition
from bastion.supervisor.tally import ServiceView

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

_Statuses = list[ServiceStatus]
_Specs = list[ServiceSpec]


class Supervisor(ServiceRunner, SecretFollower):
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
        owner: LockFile | None = None,
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
        #: The supervisor lock (``ownership.py``), held from ``open`` to ``close``: taken by
        #: ``open``, or already by the creator (``owner``: the daemon takes it before its
        #: server starts, so a refusal is the CLI's error, not a failed start).
        self._owner: LockFile | None = owner

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
        owner = self._owner
        if owner is None:
            owner = await asyncio.to_thread(ownership.take, self._db.path)
        try:
            await self._open()
        except BaseException:
            owner.release()
            self._owner = None
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
            with svc.counts_lock:  # not between a finished run's two steps (_finish_run)
                tally, run = svc.tally, svc.run
                capture = run.capture if run is not None else None
                live = (capture.read, capture.stored, capture.dropped) if capture else (0, 0, 0)
                lines = (
                    tally.lines_read + live[0],
                    tally.lines_stored + live[1],
                    tally.lines_dropped + live[2],
                )
            out.append(
                ServiceView(
                    name, svc.state.value, run.child.pid if run is not None else None, tally, *lines
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
