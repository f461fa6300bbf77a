"""What the supervisor keeps for each service, and the status it gives out of it.

:class:`_Service` is one registered service's in-memory record: its spec, state and policy,
the run in progress (:class:`_Run`), and what that run was given (secrets, redactor).
:class:`ServiceStatus` is the frozen snapshot ``status``/``list`` and the API return.
Separate from ``supervisor.py`` (which changes these records), ``run.py`` (which drives one
service's runs) and ``secret_follow.py`` (which reacts to its secrets) because all three
read and write the same record: it is their shared vocabulary, with no behaviour of its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from typing import Any

from bastion.supervisor import policy as pol
from bastion.supervisor.capture import LogCapture
from bastion.supervisor.health import HealthMonitor, McpStdioChannel, ProbeCheck
from bastion.supervisor.process import ChildProcess
from bastion.supervisor.redact import Redactor
from bastion.supervisor.secret_follow import SecretKey
from bastion.supervisor.spec import ServiceSpec
from bastion.supervisor.states import ServiceState
from bastion.supervisor.tally import ServiceTally

__all__ = ["ServiceStatus"]

S = ServiceState


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
    #: Held while a finished run's line counts move into ``tally`` and ``run`` is cleared,
    #: and while a scrape (a worker thread) reads both: between the two steps a scrape
    #: counted the run's lines twice, and the next one less (a counter going backwards).
    counts_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
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
