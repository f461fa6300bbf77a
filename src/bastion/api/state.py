"""What the routes share: the open home and the daemon's own parts, held on ``app.state``.

One :class:`DaemonState` per app instance (no module-level singletons): the in-process test
client and the real server each build their own through ``create_app``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import Request

from bastion.api.security import Counters
from bastion.app import Home
from bastion.scheduler import Scheduler

__all__ = ["DaemonState", "get_state"]


@dataclasses.dataclass
class DaemonState:
    home: Home
    port: int
    counters: Counters = dataclasses.field(default_factory=Counters)
    scheduler: Scheduler | None = None
    #: Asks the server to shut down gracefully (``POST /v1/shutdown``); None in-process.
    request_shutdown: Callable[[], None] | None = None
    started_monotonic: float = dataclasses.field(default_factory=time.monotonic)
    started_at: str = dataclasses.field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )
    #: Set when shutdown begins: SSE streams end instead of holding the server open.
    stopping: bool = False

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started_monotonic


def get_state(request: Request) -> DaemonState:
    state: DaemonState = request.app.state.daemon
    return state
