"""One service's life under the supervisor: the loop spawn -> watch -> decide, and each run.

:class:`ServiceRunner` is the part of ``Supervisor`` that a service's asyncio task runs (a
mixin, as :class:`~bastion.supervisor.secret_follow.SecretFollower` is: it works on the
supervisor's services, transitions and journal):

- a *run* (:meth:`ServiceRunner._run_once`): the secrets resolved and the redactor built, the
  spawn, log capture, the health monitor (:class:`_Hooks` are its callbacks), the descendant
  scan, then the end of the run -- stopped on request, exited, or killed as unhealthy;
- the *loop* (:meth:`ServiceRunner._supervise`): after each run, :mod:`~bastion.supervisor.policy`
  (pure) decides restart after a backoff, open the breaker, stop, or fail.

Separate from ``supervisor.py``, which holds the services, answers for them (status, events,
operations) and writes their transitions: this module is what happens *between* an
operator's start and stop, and it records what happens through the supervisor's ``_set``
and ``_save``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import random
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from bastion.config import SupervisorConfig
from bastion.errors import BastionError, SpawnFailed
from bastion.supervisor import _platform as plat
from bastion.supervisor import policy as pol
from bastion.supervisor._aio import within
from bastion.supervisor.capture import CapturedLine, LogCapture
from bastion.supervisor.health import HealthMonitor, McpStdioChannel, ProbeCheck
from bastion.supervisor.journal import Journal
from bastion.supervisor.process import ChildProcess, build_env, spawn, stop_child
from bastion.supervisor.redact import Redactor
from bastion.supervisor.secret_follow import SecretKey, SecretSource, SecretWatch
from bastion.supervisor.service import _Run, _Service
from bastion.supervisor.spec import ServiceSpec
from bastion.supervisor.states import BreakerState, ServiceState

__all__ = ["ServiceRunner", "descendant_scan_pauses"]

# The logger of the module this code was split from: the daemon's log names it on each line
# (serve's format has %(name)s), and operators' filters and the tests select it by that name.
log = logging.getLogger("bastion.supervisor.supervisor")
S = ServiceState

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

_Lines = list[CapturedLine]


class _Hooks:
    """The health monitor's callbacks for one run of one service."""

    def __init__(self, sup: ServiceRunner, svc: _Service, run: _Run) -> None:
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


class ServiceRunner:
    """The part of ``Supervisor`` that runs each service: its loop and its runs (a mixin)."""

    _services: dict[str, _Service]
    _cfg: SupervisorConfig
    _journal: Journal
    _secrets: SecretSource | None
    _daemon_env: dict[str, str]
    _rng: random.Random
    _logs: Any
    _clock_wake: asyncio.Event
    cgroups: plat.Cgroups
    cgroup_problem: str

    if TYPE_CHECKING:

        def _set(self, svc: _Service, target: ServiceState, reason: str, **extra: Any) -> None:
            pass

        def _save(self, svc: _Service) -> None:
            pass

        def emit(self, kind: str, subject: str, data: dict[str, Any]) -> None:
            pass

        async def _check_quietly(self) -> None:
            pass

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
        if given:
            # A change that landed after the stamps were read, while this run was resolved
            # and spawned, woke a check that skipped the service (nothing was given yet),
            # and nothing else wakes one: compare once now that the run is there.
            await self._check_quietly()
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
        with svc.counts_lock:  # one step for a scrape: the run's lines in tally, or in run
            if run.capture is not None:
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
