"""``bastion serve``: one process running the API, the supervisor and the scheduler.

Start-up, in this order (each step's failure leaves nothing behind):

1. initialise the home (idempotent; creates ``run/token`` if missing);
2. take the single-instance lock in ``run/`` (a second daemon fails naming the first one's
   pid and port; a lock left by a killed daemon is free, and its stale handshake removed);
3. bind 127.0.0.1 (and ::1 on the same port where IPv6 exists); port 0 picks a free port;
4. serve: connections are served under a request deadline and a per-client cap
   (:mod:`bastion.api.connections`);
5. once uvicorn listens: write ``run/daemon.json`` atomically (0600) and print the same JSON
   as the first line of stdout, so the app that spawned the daemon knows where it is;
6. then start the supervisor, which auto-starts enabled services (what needs it waits for
   it meanwhile: :mod:`bastion.api.supervision`), the WAL archiver and the scheduler.

The cyclic garbage collector may be paused by the caller for the start (``bastion serve``
does; ``ServeOptions.gc_paused``): it resumes right after the handshake, with the start's
objects frozen (docs/operations.md, "Start-up").

Shutdown (SIGTERM, SIGINT, or ``POST /v1/shutdown`` from ``bastion stop``): stop accepting,
end SSE streams, stop services by their stop policy, stop the scheduler, flush and close the
databases, remove the handshake, release the lock, exit 0. A second SIGINT forces the exit.

uvicorn's own signal handling is replaced: it re-raises the captured signal after shutting
down, which would end the process *by* SIGTERM instead of with status 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import gc
import ipaddress
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Generator
from email.utils import formatdate
from pathlib import Path
from typing import IO

import uvicorn
import uvicorn.server

from bastion.__about__ import __api_version__, __version__
from bastion._lockfile import LockFile
from bastion._platform.signals import on_stop_signals
from bastion._time import rfc3339
from bastion.api.app import create_app, declare_routes
from bastion.api.connections import ConnectionGuard, ConnectionLimits, guarded_protocol
from bastion.api.state import DaemonState
from bastion.api.supervision import stop_supervisor
from bastion.app import Home, OpenCheckAhead
from bastion.config import Config
from bastion.errors import ConfigError, SecretNotFound
from bastion.runfiles import (
    HANDSHAKE_FILE,
    TOKEN_NAME,
    TOKEN_SCOPE,
    DaemonLock,
    Handshake,
    ensure_token,
    new_token,
    read_token,
    remove_handshake,
    write_handshake,
)
from bastion.scheduler import Job, Scheduler
from bastion.supervisor import ownership

__all__ = ["ServeOptions", "bind_sockets", "http_protocol", "is_loopback", "serve"]

log = logging.getLogger("bastion.daemon")

#: Seconds an open connection (an SSE stream) may take to finish once shutdown begins.
GRACEFUL_TIMEOUT_S = 5


@dataclasses.dataclass(frozen=True, slots=True)
class ServeOptions:
    host: str | None = None
    port: int | None = None
    token_file: Path | None = None
    exposed_ok: bool = False
    log_level: str = "info"
    #: Stop (gracefully) when the process that started the daemon dies: a sidecar must not
    #: outlive its app, however the app ends (kill -9, a crash, Tauri's kill on exit).
    exit_with_parent: bool = False
    #: The caller paused the cyclic garbage collector for the start (``gc.disable()``, as
    #: ``bastion serve`` does): once the handshake is out, what the start made is frozen
    #: (``gc.freeze()``: long-lived, never traversed again) and collection resumes.
    gc_paused: bool = False


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bind(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # Only ::1; never let an IPv6 socket also take IPv4 traffic from other addresses.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_sockets(host: str, port: int, *, attempts: int = 10) -> list[socket.socket]:
    """Listening sockets: loopback means 127.0.0.1 plus ::1 (same port) where IPv6 exists."""
    if not is_loopback(host):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return [_bind(family, host.strip("[]"), port)]
    for _ in range(attempts):
        v4 = _bind(socket.AF_INET, "127.0.0.1", port)
        actual = v4.getsockname()[1]
        try:
            v6 = _bind(socket.AF_INET6, "::1", actual)
        except OSError as err:
            if err.errno == errno.EADDRINUSE and port == 0:
                v4.close()  # the free v4 port is taken on ::1: pick another pair
                continue
            if err.errno in {errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EADDRINUSE}:
                log.info("::1 not available (%s); serving on 127.0.0.1 only", err.strerror)
                return [v4]
            v4.close()
            raise
        return [v4, v6]
    raise OSError(errno.EADDRINUSE, "no port free on both 127.0.0.1 and ::1")


class _LazyHeaders(uvicorn.server.ServerState):
    """uvicorn's shared server state, with the default response headers (the ``date``)
    made when a response reads them, at most once per second, instead of by the server's
    tick (see :class:`_Server`). The protocols read them once per request."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._config = config
        self._second = -1
        self._headers: list[tuple[bytes, bytes]] = []
        super().__init__()

    @property
    def default_headers(self) -> list[tuple[bytes, bytes]]:
        now = int(time.time())
        if now != self._second:
            date = formatdate(now, usegmt=True).encode()
            extra = [(b"date", date)] if self._config.date_header else []
            self._headers = extra + self._config.encoded_headers
            self._second = now
        return self._headers

    @default_headers.setter
    def default_headers(self, value: list[tuple[bytes, bytes]]) -> None:
        pass  # uvicorn's tick assigns them; they are made on demand above instead


class _Server(uvicorn.Server):
    """uvicorn's server with bastion's signal handling and a hook once it listens.

    uvicorn's main loop wakes every 0.1 s to see whether it should exit and, every tenth
    time, to renew the ``date`` header: ten wake-ups a second of an idle daemon (issue 22
    §7). Here the loop waits for ``should_exit`` to be set (every setter wakes it) and the
    header is made when a response needs it (:class:`_LazyHeaders`). The tick's other two
    uses -- ``limit_max_requests`` and ``callback_notify`` -- are not configured by bastion;
    if they ever are, uvicorn's own loop runs.
    """

    def __init__(self, config: uvicorn.Config, on_listening: Callable[[], None]) -> None:
        self._exit = False
        self._exit_wake: Callable[[], None] | None = None
        super().__init__(config)
        self.server_state = _LazyHeaders(config)
        self._on_listening = on_listening

    @property
    def should_exit(self) -> bool:
        return self._exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._exit = value
        wake = self._exit_wake
        if value and wake is not None:
            wake()

    async def main_loop(self) -> None:
        if self.config.limit_max_requests is not None or self.config.callback_notify:
            await super().main_loop()
            return
        loop = asyncio.get_running_loop()
        requested = asyncio.Event()

        def wake() -> None:
            # Thread- and signal-safe (Ctrl+Break on Windows runs a plain signal handler).
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to wake
                loop.call_soon_threadsafe(requested.set)

        self._exit_wake = wake
        try:
            if await self.on_tick(0):  # already asked to exit
                return
            await requested.wait()
        finally:
            self._exit_wake = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # serve() installs its own handlers; see the module docstring

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            self._on_listening()


def start_archiving(home: Home) -> None:
    """Archive bastion.db's WAL while the daemon runs (``[archive]``). An archive that cannot
    be used (a missing disk, wrong modes) is logged and recorded as an "archive.failed"
    event; the daemon runs on without it."""
    from bastion.errors import BastionError

    try:
        home.start_archiving()
    except BastionError as err:
        log.error("WAL archiving is off: %s", err.message)
        with contextlib.suppress(Exception):
            home.events.emit("archive.failed", "bastion", {"error": err.to_dict()})


async def _after_handshake(home: Home, scheduler: Scheduler) -> None:
    """What the daemon starts once its handshake is out (issue 22 §7), beside the
    supervisor's start: the WAL archiver (``[archive]``) and the scheduler's thread. Neither
    is needed to answer a request; both loaded modules and started threads on the path of the
    app waiting for the daemon's line.

    The archiver holds its place in the WAL from its first pass on: what is committed before
    (by this daemon's first requests, as by any process while no daemon ran) is in the WAL,
    and its start continues the archive from there or proves that it cannot and begins a new
    generation (bastion.store.archive.archiver)."""
    if home.config.archive.enabled:
        try:
            await asyncio.to_thread(start_archiving, home)
        except Exception:  # a bug, not a refusal (start_archiving reports those): said, not fatal
            log.exception("WAL archiving is off: its start failed")
    scheduler.start()


def build_scheduler(home: Home) -> Scheduler:
    """The daemon's periodic jobs (:func:`bastion.maintenance.maintenance_jobs`): backups of
    ``bastion.db`` and ``vault.db``, retention and integrity checks, on their configured
    intervals, run one at a time on the scheduler's thread; an interval of 0 disables a job.

    Plus ``db-sample``, for the dashboard's size chart: ``bastion.db``'s file, WAL and free
    bytes every 5 minutes (:mod:`bastion.store.samples`; a stat and a pragma, cheap), the
    first a few seconds after start so the chart has a point at once.
    """
    from bastion.maintenance import maintenance_jobs
    from bastion.store.samples import INTERVAL_S, record_sample

    scheduler = Scheduler()
    for job in maintenance_jobs(home, stopping=lambda: scheduler.stopping):
        scheduler.add(job)
    run_dir = home.config.run_dir
    scheduler.add(
        Job("db-sample", INTERVAL_S, lambda: record_sample(home.db, run_dir), first_delay_s=5)
    )
    return scheduler


def load_token(home: Home, token_file: Path | None = None) -> tuple[str, str]:
    """The API token and where it is kept: ``--token-file``, the vault, or ``run/token``.

    With ``api.token_store = "vault"`` the token is created in the vault on first use, so
    an app can read it from the OS keychain instead of a file.
    """
    cfg = home.config
    if token_file is not None:
        return read_token(token_file), str(token_file)
    if cfg.api.token_store == "vault":  # noqa: S105 - a setting, not a secret
        vault = home.vault
        where = f"the vault (secret:{TOKEN_SCOPE}/{TOKEN_NAME})"
        try:
            return vault.get(TOKEN_NAME, TOKEN_SCOPE, actor="daemon").reveal(), where
        except SecretNotFound:
            vault.set(TOKEN_NAME, new_token(), TOKEN_SCOPE, actor="daemon")
            return vault.get(TOKEN_NAME, TOKEN_SCOPE, actor="daemon").reveal(), where
    path = ensure_token(cfg.run_dir)
    return read_token(path), str(path)


#: The soft open-files limit `bastion serve` raises a lower one to (within the hard limit):
#: the usual default, which children inherit (a select()-based one keeps working under it).
DESCRIPTORS_WANTED = 1024
#: The least it starts with: its databases, sockets and pipes at rest take about 30 (at 20
#: the event loop could not be made: a traceback; at 32 the WAL archiver failed mid-start).
DESCRIPTORS_NEEDED = 64


def ensure_descriptors() -> None:
    """Raise the soft open-files limit to :data:`DESCRIPTORS_WANTED` where it is lower (a
    launchd job's default is 256, some shells' less), and refuse to start, saying so, below
    :data:`DESCRIPTORS_NEEDED`."""
    from bastion._platform import descriptor_limit
    from bastion.errors import DescriptorLimit

    limits = descriptor_limit(DESCRIPTORS_WANTED)
    if limits is None:
        return  # no such per-process limit here
    soft, hard = limits
    if 0 <= soft < DESCRIPTORS_NEEDED:
        raise DescriptorLimit(
            f"the open-files limit is {soft} (hard limit {hard if hard >= 0 else 'none'}): "
            f"`bastion serve` needs at least {DESCRIPTORS_NEEDED} (its databases, sockets and "
            "each service's pipes)",
            hint=f"Raise it before starting the daemon: `ulimit -n {DESCRIPTORS_WANTED}` (and "
            "the hard limit, `ulimit -Hn`, if it is lower), LimitNOFILE= in a systemd unit, "
            "or NumberOfFiles in a launchd job.",
        )


def serve(
    cfg: Config,
    options: ServeOptions,
    *,
    stdout: IO[str] | None = None,
    precheck: OpenCheckAhead | None = None,
) -> int:
    """Run the daemon until told to stop; return the process exit status (0 on clean stop).
    ``precheck``: bastion.db's open-time check, started earlier (see ``Home.open``)."""
    out = stdout or sys.stdout
    ensure_descriptors()
    host = options.host or cfg.api.host
    port = cfg.api.port if options.port is None else options.port
    if not is_loopback(host) and not options.exposed_ok:
        raise ConfigError(
            f"refusing to listen on {host}: it is not a loopback address",
            hint="bastion's API is for this machine only; pass --i-know-this-is-exposed "
            "to listen on a non-loopback address anyway.",
        )
    if not is_loopback(host):
        log.warning("listening on %s: the API is reachable from other machines", host)

    if cfg.store.on_corrupt == "auto":
        # The daemon recovers a damaged database on its own (quarantine, restore the newest
        # verified backup, salvage): the desktop app that spawned it has no operator.
        cfg = dataclasses.replace(cfg, store=dataclasses.replace(cfg.store, on_corrupt="recover"))
    # The routes are declared while the open-time check may still run (Home.init waits for it).
    declare_routes(metrics=cfg.api.metrics)
    # The daemon lock before the home is opened: opening acts on the open-time check, and a
    # damaged file is quarantined and replaced (on_corrupt = "recover"). A second `serve` did
    # that under the running daemon, which went on writing to the quarantined copy, and only
    # then found the lock taken.
    lock = DaemonLock(cfg.run_dir)
    with contextlib.suppress(OSError):  # a disk that refuses: Home.init names it, typed
        lock.acquire()
    try:
        home = Home.init(cfg, precheck=precheck)
    except BaseException:
        lock.release()
        raise
    try:
        if not lock.held:
            lock.acquire()
        # Before the server starts: another process supervising this home (`services run`,
        # an app's own Supervisor) is SupervisorBusy here, the CLI's one-line error, and not
        # a failed lifespan (uvicorn's traceback). The supervisor releases it at its close.
        owner = ownership.take(cfg.db_path)
    except BaseException:
        home.close()
        lock.release()
        raise
    try:
        if lock.took_over_from is not None:
            log.warning(
                "took over from a daemon that did not shut down cleanly (pid %d)",
                lock.took_over_from.pid,
            )
        token, token_where = load_token(home, options.token_file)
        try:
            sockets = bind_sockets(host, port)
        except OSError as err:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {err.strerror or err}",
                hint="Pick another --port, or 0 for any free port.",
            ) from err
        return _run(
            home,
            owner=owner,
            sockets=sockets,
            token=token,
            token_where=token_where,
            host=host,
            out=out,
            options=options,
        )
    finally:
        owner.release()  # a no-op after the supervisor's close released it
        home.close()
        remove_handshake(cfg.run_dir, pid=os.getpid())
        lock.release()


def _run(
    home: Home,
    *,
    owner: LockFile,
    sockets: list[socket.socket],
    token: str,
    token_where: str,
    host: str,
    out: IO[str],
    options: ServeOptions,
) -> int:
    cfg = home.config
    port = int(sockets[0].getsockname()[1])
    hosts = tuple(s.getsockname()[0] for s in sockets)
    scheduler = build_scheduler(home)
    state = DaemonState(home=home, port=port, scheduler=scheduler, supervisor_lock=owner)
    extra_hosts = () if is_loopback(host) else (host,)
    # The supervisor (auto-starting services) starts once the handshake is out, and the app's
    # lifespan stops the services after the sockets stop accepting (bastion.api.supervision).
    app = create_app(
        home,
        port=port,
        token=token,
        state=state,
        extra_hosts=extra_hosts,
        supervise="after-listening",
    )

    late: list[asyncio.Task[None]] = []

    def on_listening() -> None:
        handshake = Handshake(
            pid=os.getpid(),
            port=port,
            started_at=rfc3339(time.time()),
            version=__version__,
            hosts=hosts,
            api_version=__api_version__,
        )
        write_handshake(cfg.run_dir, handshake)
        try:
            out.write(handshake.to_json() + "\n")
            out.flush()
        except (OSError, AttributeError) as err:  # closed (None), full, or nobody reading
            # The daemon serves all the same: the file written above says the same thing.
            log.warning(
                "could not print the handshake on stdout (%s); it is in %s",
                err,
                cfg.run_dir / HANDSHAKE_FILE,
            )
        log.info("listening on %s port %d", ", ".join(hosts), port)
        # For a person at a terminal, on stderr (stdout's first line is the machine
        # handshake): never print(file=sys.stderr) here, which writes to *stdout* when
        # stderr is None (closed at start, pythonw), and so the one-time sign-in link would
        # go to the parent reading the handshake.
        lines = []
        dashboard = getattr(app.state, "dashboard", None)
        if dashboard is not None:  # one-time sign-in link; the token itself is never printed
            lines.append(f"dashboard: {dashboard.login_url()}")
        lines.append(f"bastion: API at {handshake.url}  (OpenAPI: {handshake.url}/openapi.json)")
        lines.append(f"bastion: token in {token_where}")
        if sys.stderr is not None:
            with contextlib.suppress(OSError):
                sys.stderr.write("".join(line + "\n" for line in lines))
                sys.stderr.flush()
        if state.listening is not None:
            state.listening.set()  # the supervisor's start (bastion.api.supervision)
        late.append(
            asyncio.get_running_loop().create_task(
                _after_handshake(home, scheduler), name="after-handshake"
            )
        )
        if options.gc_paused:
            # Resumed here, once: the objects of the start (the imports, the routes, the
            # open home) are in the permanent generation, so no collection of the daemon's
            # life traverses them; the few cycles the start left behind stay with them.
            gc.freeze()
            gc.enable()

    config = uvicorn.Config(
        app,
        loop="uvloop" if _has("uvloop") else "asyncio",
        http=http_protocol(cfg),
        # No WebSocket protocol: the API serves none (SecurityMiddleware answers only http
        # scopes), so an upgrade request is read as the plain HTTP request it also is and
        # meets the same Host/Origin/token checks; uvicorn's WebSocket implementation and
        # the websockets library it loads (~15 ms) stay out of the start (issue 22 §7).
        ws="none",
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level=options.log_level,
        timeout_graceful_shutdown=GRACEFUL_TIMEOUT_S,
        server_header=False,
        date_header=True,
    )
    server = _Server(config, on_listening)

    def request_stop(signum: int | None = None) -> None:
        if state.stopping and signum == signal.SIGINT:
            # A second Ctrl-C: stop waiting for open connections. Services are still
            # stopped below; a repeated SIGTERM (a supervisor re-sending it) changes nothing.
            server.force_exit = True
        state.stopping = True
        server.should_exit = True

    state.request_shutdown = request_stop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        # SIGTERM/SIGINT (and Ctrl+Break on Windows, whose loop has no add_signal_handler).
        restore_signals = on_stop_signals(loop, request_stop)
        if options.exit_with_parent:
            from bastion.api.parentwatch import watch_parent

            def parent_gone(what: str) -> None:
                log.warning("%s exited: stopping", what)
                request_stop()

            watch = loop.create_task(watch_parent(parent_gone), name="parent-watch")
        try:
            await server.serve(sockets=sockets)
        finally:
            state.stopping = True
            # A start on a thread cannot be cancelled: it ends before what it started stops.
            await asyncio.gather(*late, return_exceptions=True)
            # Normally the app's lifespan has stopped the services already; after a forced
            # exit it has not, and they must not outlive the daemon.
            await stop_supervisor(state)
            log.info("shutting down: scheduler")
            await asyncio.to_thread(scheduler.stop)
            if options.exit_with_parent:
                watch.cancel()
            restore_signals()

    loop_factory = _loop_factory()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())
    for sock in sockets:
        sock.close()
    log.info("stopped")
    return 0


def http_protocol(cfg: Config) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools where installed, else h11) with the request
    deadline and per-client connection cap of ``cfg.api`` (see bastion.api.connections)."""
    guard = ConnectionGuard(
        ConnectionLimits(
            header_timeout_s=cfg.api.header_timeout_s,
            max_per_client=cfg.api.max_connections_per_client,
        )
    )
    return guarded_protocol("httptools" if _has("httptools") else "h11", guard)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    if _has("uvloop"):
        import uvloop

        return uvloop.new_event_loop
    return None
