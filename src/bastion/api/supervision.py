"""The daemon's supervisor: built from ``services/*.toml``, fed secrets by the vault, kept in
step with the folder while it runs.

The supervisor is asyncio code, so it lives on the server's event loop: ``create_app(...,
supervise=True)`` starts it from the app's lifespan (auto-starting enabled services) and
closes it when the server shuts down, *after* uvicorn has stopped accepting connections and
before the databases close.

``bastion serve`` starts it right *after* its handshake (``supervise="after-listening"``;
issue 22 §7): the supervisor's modules, its open (the journal, the orphan sweep) and the
services' spawns are not on the path of the app waiting for the daemon's line. Meanwhile
the API answers; what needs the supervisor -- the service routes, ``GET /v1/status``'s
services summary -- waits for the start to end (``DaemonState.started``). A start that
fails is logged and recorded as a ``supervisor.failed`` event; the daemon keeps serving the
vault and the store, and each service route answers that error (the same stand as for an
invalid spec file: services do not keep the vault an app needs down). An app's in-process
``create_app(supervise=True)`` has no handshake: its lifespan waits for the start, and a
failed start fails the lifespan, as before. ``vault`` and ``supervisor`` never import each other; this
module runs what ``bastion.app`` wires (``Home.supervisor``, ``VaultSecrets``).

The daemon starts with the valid spec files; an invalid one does not keep the daemon (and
the vault an app needs from it) down: it is reported like an invalid file found later, by
the :class:`~bastion.supervisor.catalog.ServiceCatalog` that watches the folder.

Every version of a spec the catalog applies, and of ``bastion.toml`` (at start and whenever
the file changes while the daemon runs), goes into the configuration history
(:mod:`bastion.config_history`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from bastion._lockfile import LockFile
from bastion.api.state import DaemonState
from bastion.app import Home

if TYPE_CHECKING:
    from bastion.domains.confighistory import ConfigVersion
    from bastion.supervisor import Supervisor
    from bastion.supervisor.catalog import ServiceCatalog

__all__ = ["build_supervisor", "follow_config_file", "stop_supervisor", "supervisor_lifespan"]

log = logging.getLogger("bastion.daemon")

#: Quiet time after a change of bastion.toml before its version is recorded.
CONFIG_SETTLE_S = 0.3


def build_supervisor(
    home: Home, owner: LockFile | None = None
) -> tuple[Supervisor, ServiceCatalog]:
    """The home's supervisor over its valid spec files (secrets from the vault), and the
    catalog that keeps it in step with ``services/``; ``owner``: the supervisor lock, when
    the daemon took it already."""
    from bastion.domains.confighistory import ConfigHistoryRepo
    from bastion.supervisor.catalog import ServiceCatalog
    from bastion.supervisor.spec import validate_dir

    cfg = home.config
    good, _bad = validate_dir(cfg.services_dir)  # the catalog's first reload reports _bad
    supervisor = home.supervisor(good, owner=owner)
    catalog = ServiceCatalog(
        supervisor,
        cfg.services_dir,
        autostart=cfg.supervisor.autostart,
        watch=cfg.supervisor.watch,
        poll_s=cfg.supervisor.watch_poll_ms / 1000,
        history=ConfigHistoryRepo(home.db),
    )
    return supervisor, catalog


async def follow_config_file(home: Home) -> None:
    """Record ``bastion.toml`` now and after each change, until cancelled (the daemon's
    values were read at start: a change applies at its next start)."""
    from bastion._platform.filewatch import watch_files
    from bastion.config import CONFIG_FILE
    from bastion.config_history import sync_config
    from bastion.errors import BastionError, ConfigError

    watch = watch_files(home.config.home, [CONFIG_FILE])
    first = True  # the version the daemon started with: nothing to restart for
    # The last look found the file invalid: the next valid one is said even when it records
    # nothing (a fix back to the latest version -- an undo, `config rollback` -- is no new
    # version), or whoever showed config.invalid would show it until the next new edit.
    invalid = False
    try:
        while True:
            try:
                version = await asyncio.to_thread(sync_config, home, "file")
            except ConfigError as err:
                # Not recorded (it cannot be what runs); said now, not first at the next
                # start, which would refuse it -- in the log, and as an event, which the app
                # that spawned the daemon (it does not read the log) and the dashboard see.
                log.warning(
                    "%s is not valid, so it is not recorded and the daemon keeps the values "
                    "it started with; its next start would refuse it: %s. %s",
                    CONFIG_FILE,
                    err.message,
                    err.hint or "",
                )
                await _config_event(home, "config.invalid", {"error": err.to_dict()})
                invalid = True
            except BastionError as err:  # the disk or the database refused: a line, no traceback
                log.warning(
                    "could not record %s in the configuration history: %s. %s",
                    CONFIG_FILE,
                    err.message,
                    err.hint,
                )
            except Exception:
                log.exception("could not record %s in the configuration history", CONFIG_FILE)
            else:
                if version is None and invalid:
                    version = await asyncio.to_thread(_latest_config, home)
                invalid = False
                if version is not None and not first:
                    log.warning(
                        "%s changed (version %d): restart the daemon to apply it",
                        CONFIG_FILE,
                        version.id,
                    )
                    data = {"version": version.id, "applies": "next start"}
                    await _config_event(home, "config.changed", data)
            first = False
            await watch.changed()
            # Settle: an editor that truncates and then writes (or writes in pieces) makes
            # several events; the version is what the file says once they stop.
            while True:
                try:
                    async with asyncio.timeout(CONFIG_SETTLE_S):
                        await watch.changed()
                except TimeoutError:
                    break
    finally:
        watch.close()


def _latest_config(home: Home) -> ConfigVersion | None:
    """The latest recorded version of bastion.toml (read-only)."""
    from bastion.domains.confighistory import CONFIG_TARGET, ConfigHistoryRepo

    return ConfigHistoryRepo(home.db).latest(CONFIG_TARGET)


async def _config_event(home: Home, kind: str, data: dict[str, Any]) -> None:
    """Record ``kind`` about bastion.toml in the events; a database that refuses is a line in
    the log (the log line about the file is written already)."""
    from bastion.config import CONFIG_FILE
    from bastion.errors import BastionError

    try:
        await asyncio.to_thread(home.events.emit, kind, CONFIG_FILE, data)
    except BastionError as err:
        log.warning("could not record the event %s: %s", kind, err.message)


#: ``create_app(supervise=...)``: start the supervisor in the lifespan (True) or once the
#: server listens (``"after-listening"``: ``bastion serve``, which sets ``DaemonState.listening``).
AFTER_LISTENING = "after-listening"


def supervisor_lifespan(
    state: DaemonState, *, after_listening: bool = False
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """The app lifespan that runs the supervisor for as long as the server runs. With
    ``after_listening`` the supervisor starts once ``state.listening`` is set (the server's
    handshake is out) instead of before the lifespan's start returns."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        gate: asyncio.Event | None = None
        if after_listening:
            gate = state.listening = asyncio.Event()
        start = loop.create_task(_start(state, gate), name="supervisor-start")
        state.supervisor_start = start
        try:
            if gate is None:
                await start  # in-process: the lifespan's start is the supervisor's, as before
            yield
        finally:
            if gate is not None and not gate.is_set():
                start.cancel()  # never began: the server stopped before it listened
            # A start under way is waited for, not cancelled part-way through the
            # supervisor's open or a spawn; one that has not begun yet sees the daemon
            # stopping and starts nothing.
            await asyncio.gather(start, return_exceptions=True)
            await stop_supervisor(state)

    return lifespan


async def _start(state: DaemonState, gate: asyncio.Event | None) -> None:
    """Open the supervisor, start the configuration history's follower, reload the catalog
    and auto-start the enabled services; after ``gate`` is set, when there is one. A failure
    after the handshake is logged and recorded here (and raised to whoever awaits the start:
    the service routes)."""
    if gate is not None:
        await gate.wait()
        if state.stopping:
            return  # asked to stop right after the handshake: nothing to start
    try:
        supervisor, catalog = await asyncio.to_thread(
            build_supervisor, state.home, state.supervisor_lock
        )
        await supervisor.open()
        for rec in supervisor.swept:
            log.warning("ended orphan pid %d left by a previous daemon", rec.pid)
        state.supervisor = supervisor
        state.catalog = catalog
        state.config_follower = asyncio.get_running_loop().create_task(
            follow_config_file(state.home), name="config-history"
        )
        # The first reload registers nothing new (the specs above are the folder); it
        # reports invalid files and starts the watch. Autostart, with OPEN breakers
        # resumed rather than reset, is start_all's.
        await catalog.start(autostart=False)
        if state.home.config.supervisor.autostart:
            await supervisor.start_all()
    except asyncio.CancelledError:
        raise
    except BaseException as err:
        if gate is not None:
            await _start_failed(state, err)
        raise


async def _start_failed(state: DaemonState, err: BaseException) -> None:
    """Say why the supervisor did not start: the daemon's log, and an event (what the app
    that spawned the daemon, which does not read the log, and the dashboard see)."""
    from bastion.errors import BastionError

    if isinstance(err, BastionError):
        log.error("the supervisor did not start: %s. %s", err.message, err.hint or "")
        data: dict[str, Any] = {"error": err.to_dict()}
    else:
        log.error("the supervisor did not start", exc_info=err)
        data = {"error": {"code": "internal", "message": type(err).__name__, "hint": ""}}
    with contextlib.suppress(BastionError):
        await asyncio.to_thread(state.home.events.emit, "supervisor.failed", "supervisor", data)


async def stop_supervisor(state: DaemonState) -> None:
    """Stop every service (each by its stop policy) and flush; once, whoever calls first."""
    supervisor, state.supervisor = state.supervisor, None
    catalog, state.catalog = state.catalog, None
    follower, state.config_follower = state.config_follower, None
    state.stopping = True
    if follower is not None:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    if catalog is not None:
        await catalog.close()
    if supervisor is None:
        return
    log.info("stopping services")
    await supervisor.close()
    log.info("services stopped")
