"""What the routes share: the open home and the daemon's own parts, held on ``app.state``.

One :class:`DaemonState` per app instance (no module-level singletons): the in-process test
client and the real server each build their own through ``create_app``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import Request

from bastion._lockfile import LockFile
from bastion._time import rfc3339
from bastion.api.security import Counters
from bastion.app import Home
from bastion.errors import DaemonUnreachable
from bastion.scheduler import Scheduler

if TYPE_CHECKING:
    # Loaded by the supervisor's start (bastion.api.supervision), which `bastion serve` runs
    # after its handshake: the daemon's start does not import the supervisor (issue 22 §7).
    from bastion.supervisor import Supervisor
    from bastion.supervisor.catalog import ServiceCatalog

__all__ = ["DaemonState", "get_state", "request_actor"]


@dataclasses.dataclass
class DaemonState:
    home: Home
    port: int
    counters: Counters = dataclasses.field(default_factory=Counters)
    scheduler: Scheduler | None = None
    #: Asks the server to shut down gracefully (``POST /v1/shutdown``); None in-process.
    request_shutdown: Callable[[], None] | None = None
    started_monotonic: float = dataclasses.field(default_factory=time.monotonic)
    started_at: str = dataclasses.field(default_factory=lambda: rfc3339(time.time()))
    #: Set when shutdown begins: SSE streams end instead of holding the server open.
    stopping: bool = False
    #: The running supervisor (opened in the app's lifespan when ``create_app(supervise=True)``).
    supervisor: Supervisor | None = None
    #: The supervisor's start while it runs (``bastion serve`` starts it right after its
    #: handshake): what needs the supervisor waits for it, and a start that failed raises its
    #: error there. None when nothing starts one.
    supervisor_start: asyncio.Task[None] | None = None
    #: Set by ``bastion serve`` once its handshake is out: the supervisor's start waits for
    #: it (``create_app(supervise="after-listening")``).
    listening: asyncio.Event | None = None
    #: Records ``bastion.toml`` into the configuration history while the daemon runs.
    config_follower: asyncio.Task[None] | None = None
    #: Keeps the supervisor in step with services/ (set with ``supervisor``).
    catalog: ServiceCatalog | None = None
    #: The supervisor lock ``bastion serve`` took before its server started (None: the
    #: supervisor takes it at ``open``); the supervisor releases it at ``close``.
    supervisor_lock: LockFile | None = None

    async def started(self) -> None:
        """Wait for the supervisor's start, if one is under way; raise the error it failed
        with, if it did. Without a start (an app without supervision) return at once."""
        start = self.supervisor_start
        if start is not None:
            # shield: a request that goes away (its client closed) must not cancel the start.
            await asyncio.shield(start)

    def require_supervisor(self) -> Supervisor:
        if self.supervisor is None:
            raise DaemonUnreachable(
                "this API instance runs no supervisor",
                hint="Service control needs `bastion serve`; `bastion services list` reads "
                "the stored state without it.",
            )
        return self.supervisor

    async def synced_supervisor(self) -> Supervisor:
        """The supervisor, after picking up any change to services/ not yet applied, so an
        answer naming services matches the files (what the CLI reads) at this moment."""
        await self.started()
        supervisor = self.require_supervisor()
        if self.catalog is not None:
            await self.catalog.sync()
        return supervisor

    async def started_catalog(self) -> ServiceCatalog:
        """The catalog, once the supervisor's start is over (see :meth:`require_catalog`)."""
        await self.started()
        return self.require_catalog()

    def require_catalog(self) -> ServiceCatalog:
        self.require_supervisor()
        if self.catalog is None:
            raise DaemonUnreachable(
                "this API instance does not manage the services folder",
                hint="Declaring or reloading services needs `bastion serve`.",
            )
        return self.catalog

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started_monotonic


async def get_state(request: Request) -> DaemonState:
    # async on purpose: FastAPI runs a plain-def dependency on its thread pool, a thread hop
    # per request that cost the hot routes most of their throughput (bench/api.py).
    state: DaemonState = request.app.state.daemon
    return state


def request_actor(request: Request) -> str:
    """Who the activity feed and the vault's audit name for this request: ``api`` or ``dashboard``.

    The security middleware has already let the request in, so it carried either the bearer
    token (an app, the CLI: ``api``) or the dashboard's session cookie and no token at all
    (``dashboard``). Every route that records a change asks here, so one action is attributed
    the same way whichever route it went through.
    """
    return "api" if "authorization" in request.headers else "dashboard"
