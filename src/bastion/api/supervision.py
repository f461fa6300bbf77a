"""The daemon's supervisor: built from ``services/*.toml``, fed secrets by the vault.

The supervisor is asyncio code, so it lives on the server's event loop: ``create_app(...,
supervise=True)`` opens it in the app's lifespan (auto-starting enabled services) and
closes it when the server shuts down, *after* uvicorn has stopped accepting connections and
before the databases close. ``vault`` and ``supervisor`` never import each other; this
module runs what ``bastion.app`` wires (``Home.supervisor``, ``VaultSecrets``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI

from bastion.api.state import DaemonState
from bastion.app import Home
from bastion.supervisor import Supervisor

__all__ = ["build_supervisor", "stop_supervisor", "supervisor_lifespan"]

log = logging.getLogger("bastion.daemon")


def build_supervisor(home: Home) -> Supervisor:
    """The home's supervisor (spec files validated, secrets from the vault)."""
    return home.supervisor()


def supervisor_lifespan(
    state: DaemonState,
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """The app lifespan that runs the supervisor for as long as the server runs."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        supervisor = build_supervisor(state.home)
        await supervisor.open()
        for rec in supervisor.swept:
            log.warning("ended orphan pid %d left by a previous daemon", rec.pid)
        state.supervisor = supervisor
        try:
            if state.home.config.supervisor.autostart:
                await supervisor.start_all()
            yield
        finally:
            await stop_supervisor(state)

    return lifespan


async def stop_supervisor(state: DaemonState) -> None:
    """Stop every service (each by its stop policy) and flush; once, whoever calls first."""
    supervisor, state.supervisor = state.supervisor, None
    state.stopping = True
    if supervisor is None:
        return
    log.info("stopping services")
    await supervisor.close()
    log.info("services stopped")
