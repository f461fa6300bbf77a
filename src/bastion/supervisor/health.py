"""Health probes and the per-run monitor that applies startup/liveness/readiness semantics.

Probes (each bounded by its ``timeout_s``; a probe never raises, it answers a
:class:`ProbeResult`):

- ``process``: the child has not exited.
- ``tcp``: a connection to ``host:port`` is accepted.
- ``http``: ``GET url`` answers a status inside ``expect_status`` (HTTP/1.1, one connection).
- ``exec``: ``command`` exits 0 (killed with its group on timeout).
- ``mcp``: an MCP ``ping`` request is answered, over the child's own stdin/stdout
  (:class:`McpStdioChannel`) or over streamable HTTP at ``url`` (uses the ``mcp`` package,
  imported only when such a probe runs).
- ``websocket``: a WebSocket at ``url`` opens (``websockets``), answers ``send`` with a
  message containing ``expect``, and completes the close handshake.
- ``grpc``: ``grpc.health.v1.Health/Check`` answers SERVING for ``service`` (``grpclib``, a
  pure-Python client, from ``bastion[grpc]``; imported only when such a probe runs).

:class:`HealthMonitor` runs them with Kubernetes semantics: the startup probe gates
everything and gets its own failure budget (a slow starter is not killed while it is within
it); then liveness failures past ``failure_threshold`` in a row mean "restart", and readiness
only reports whether the service should receive work.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bastion.supervisor._aio import within
from bastion.supervisor._platform import kill_tree
from bastion.supervisor.process import ChildProcess
from bastion.supervisor.spec import HealthSpec, ProbeSpec

__all__ = [
    "HealthHooks",
    "HealthMonitor",
    "McpStdioChannel",
    "Probe",
    "ProbeCheck",
    "ProbeResult",
    "make_probe",
]


@dataclasses.dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe's verdict and a detail (never the child's output)."""

    ok: bool
    detail: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class ProbeCheck:
    """The latest result of one of a service's probes, as the status and the board show it.

    ``detail`` comes from the probe (an HTTP status, an exit code, a timeout) and may quote
    what the child answered (a line that is not HTTP, an MCP error); the monitor redacts the
    child's injected secrets from it, then bounds its length.
    """

    role: str  # startup | liveness | readiness
    kind: str  # process | tcp | http | exec | mcp | websocket | grpc
    ok: bool
    detail: str
    latency_ms: float
    at: float  # wall clock, for display
    consecutive_failures: int


Probe = Callable[[], Awaitable[ProbeResult]]


async def _tcp(spec: ProbeSpec) -> ProbeResult:
    try:
        _reader, writer = await within(
            asyncio.open_connection(spec.host, spec.port), spec.timeout_s
        )
    except TimeoutError:
        return ProbeResult(False, f"tcp {spec.host}:{spec.port}: timed out")
    except OSError as err:
        return ProbeResult(False, f"tcp {spec.host}:{spec.port}: {err.strerror or err}")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ProbeResult(True)


async def _http_status(url: str, timeout: float) -> int:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    reader, writer = await within(asyncio.open_connection(host, port), timeout)
    try:
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "User-Agent: bastion-probe\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode("ascii"))
        await within(writer.drain(), timeout)
        status_line = await within(reader.readline(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    fields = status_line.split()
    if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
        # Quoted whole and as text: the monitor redacts it before bounding its length (a
        # cut or a repr first could leave part of a secret, or an escaped form, behind).
        answer = status_line.rstrip(b"\r\n").decode("utf-8", "replace")
        raise ValueError(f"not an HTTP response: {answer}")
    return int(fields[1])


async def _http(spec: ProbeSpec) -> ProbeResult:
    try:
        status = await within(_http_status(spec.url, spec.timeout_s), spec.timeout_s)
    except TimeoutError:
        return ProbeResult(False, f"GET {spec.url}: timed out after {spec.timeout_s:g}s")
    except (OSError, ValueError) as err:
        return ProbeResult(False, f"GET {spec.url}: {getattr(err, 'strerror', None) or err}")
    low, high = spec.expect_status
    if low <= status <= high:
        return ProbeResult(True, f"HTTP {status}")
    return ProbeResult(False, f"GET {spec.url}: HTTP {status}, expected {low}-{high}")


async def _exec(spec: ProbeSpec, env: dict[str, str]) -> ProbeResult:
    try:
        proc = await asyncio.create_subprocess_exec(
            *spec.command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own group, killed whole on timeout (POSIX)
        )
    except OSError as err:
        return ProbeResult(False, f"exec {spec.command[0]}: {err.strerror or err}")
    try:
        code = await within(proc.wait(), spec.timeout_s)
    except TimeoutError:
        kill_tree(proc.pid)
        await proc.wait()
        return ProbeResult(False, f"exec {spec.command[0]}: timed out after {spec.timeout_s:g}s")
    return ProbeResult(code == 0, f"exec {spec.command[0]}: exit {code}")


class McpStdioChannel:
    """JSON-RPC over a child's stdin/stdout, just enough for MCP ``ping``.

    The stdout of a stdio MCP server is its protocol channel, so it is read here, not by the
    log capture; responses are matched to requests by id and everything else is ignored.
    ``ping`` is valid before ``initialize`` (MCP lifecycle), so no session is needed.
    """

    def __init__(self, stdin: asyncio.StreamWriter, stdout: asyncio.StreamReader) -> None:
        self._stdin = stdin
        self._stdout = stdout
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        while True:
            try:
                line = await self._stdout.readline()
            except (ValueError, OSError):  # an over-long line or a broken pipe
                continue
            if not line:
                break
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                future = self._pending.pop(message.get("id"), None)  # type: ignore[arg-type]
                if future is not None and not future.done():
                    future.set_result(message)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("the server closed stdout"))

    async def ping(self, timeout: float) -> ProbeResult:
        """Send an MCP ``ping`` over stdio and wait up to ``timeout`` for its answer."""
        self._next_id += 1
        request_id = self._next_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        body = {"jsonrpc": "2.0", "id": request_id, "method": "ping"}
        try:
            self._stdin.write(json.dumps(body).encode() + b"\n")
            await within(self._stdin.drain(), timeout)
            reply = await within(future, timeout)
        except TimeoutError:
            return ProbeResult(False, f"mcp ping: no answer in {timeout:g}s")
        except (ConnectionError, OSError) as err:
            return ProbeResult(False, f"mcp ping: {err}")
        finally:
            self._pending.pop(request_id, None)
        if "error" in reply:
            return ProbeResult(
                False, f"mcp ping: error {json.dumps(reply['error'], ensure_ascii=False)}"
            )
        return ProbeResult(True, "mcp ping")

    async def close(self) -> None:
        """Stop reading the child's stdout and close its stdin."""
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        self._stdin.close()


async def _mcp_http(spec: ProbeSpec) -> ProbeResult:
    try:
        from mcp.client.session import ClientSession
        from mcp.client.streamable_http import streamable_http_client
    except ImportError:
        return ProbeResult(False, "mcp probe over http needs the `mcp` package (pip install mcp)")

    async def ping() -> None:
        async with streamable_http_client(spec.url) as streams:  # noqa: SIM117 - streams
            async with ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                await session.send_ping()

    try:
        await within(ping(), spec.timeout_s)
    except TimeoutError:
        return ProbeResult(False, f"mcp ping {spec.url}: no answer in {spec.timeout_s:g}s")
    except Exception as err:  # the client raises many kinds; each is a failed probe
        return ProbeResult(False, f"mcp ping {spec.url}: {type(err).__name__}: {err}")
    return ProbeResult(True, "mcp ping")


#: The largest message a websocket probe accepts (a health answer is small).
WS_MAX_BYTES = 64 * 1024


async def _websocket(spec: ProbeSpec) -> ProbeResult:
    """Open ``spec.url``, send ``spec.send``, wait for a message containing ``spec.expect``,
    and close with the close handshake (a server that never answers the close frame fails)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

    where = f"websocket {spec.url}"
    opened: list[Any] = []  # the connection, for what it saw when the time runs out

    async def exchange() -> ProbeResult:
        async with connect(
            spec.url,
            open_timeout=None,  # the whole exchange is bounded below
            close_timeout=spec.timeout_s,
            ping_interval=None,
            max_size=WS_MAX_BYTES,
            compression=None,
            user_agent_header="bastion-probe",
            proxy=None,
        ) as ws:
            opened.append(ws)
            if spec.send:
                await ws.send(spec.send)
            if spec.expect:
                message = await ws.recv()
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                if spec.expect not in text:
                    # Quoted whole: the monitor redacts before it bounds the length.
                    return ProbeResult(False, f"{where}: expected {spec.expect!r}, got {text!r}")
        if ws.close_code is None or ws.close_code == 1006:
            return ProbeResult(False, f"{where}: the server did not complete the close handshake")
        return ProbeResult(True, "websocket open, answered, closed" if spec.expect else "websocket")

    try:
        return await within(exchange(), spec.timeout_s)
    except TimeoutError:
        broken = _ws_violation(opened[0]) if opened else None
        if broken is not None:
            # The client closes on a frame it refuses and waits for the server's close; a
            # server that broke the protocol seldom answers it, and "timed out" would hide
            # what it did.
            return ProbeResult(
                False, f"{where}: {broken} (and no answer to the close in {spec.timeout_s:g}s)"
            )
        return ProbeResult(False, f"{where}: timed out after {spec.timeout_s:g}s")
    except InvalidURI as err:
        return ProbeResult(False, f"{where}: {err}")
    except InvalidHandshake as err:  # not a WebSocket endpoint: an HTTP status, a bad upgrade
        # Its cause says what the server did ("connection closed while reading HTTP
        # headers": it hung up mid-handshake); the message alone is the same for all of them.
        cause = f" ({err.__cause__})" if err.__cause__ is not None else ""
        return ProbeResult(False, f"{where}: handshake refused: {err}{cause}")
    except ConnectionClosed as err:
        return ProbeResult(False, f"{where}: closed before answering ({err})")
    except OSError as err:
        return ProbeResult(False, f"{where}: {err.strerror or err}")


def _ws_violation(ws: Any) -> str | None:
    """What the server did that made the probe close the connection (a frame over
    :data:`WS_MAX_BYTES`, text that is not UTF-8, a bad frame), or None."""
    protocol = getattr(ws, "protocol", None)
    failed = getattr(protocol, "parser_exc", None)
    sent = getattr(protocol, "close_sent", None)
    # Protocol error, unsupported data, invalid payload (not UTF-8), message too big: the
    # codes the client closes with for what it received (1011 is its own way out when the
    # time is up, 1000 a normal close).
    if failed is None and (sent is None or sent.code not in (1002, 1003, 1007, 1009)):
        return None
    what = str(failed) if failed is not None else f"the probe closed it with {sent}"
    return f"the server broke the WebSocket protocol: {what}"


async def _grpc(spec: ProbeSpec) -> ProbeResult:
    """``grpc.health.v1.Health/Check`` for ``spec.service`` at ``host:port`` (grpclib, a
    pure-Python HTTP/2 client: bastion[grpc]); healthy when the answer is SERVING."""
    where = f"grpc health {spec.host}:{spec.port}"
    try:
        from grpclib.client import Channel
        from grpclib.exceptions import GRPCError
        from grpclib.health.v1.health_grpc import HealthStub
        from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
    except ImportError:
        return ProbeResult(False, "a grpc probe needs grpclib: pip install 'bastion[grpc]'")
    channel = Channel(spec.host, spec.port)
    try:
        reply = await within(
            HealthStub(channel).Check(HealthCheckRequest(service=spec.service)), spec.timeout_s
        )
    except TimeoutError:
        return ProbeResult(False, f"{where}: no answer in {spec.timeout_s:g}s")
    except GRPCError as err:  # NOT_FOUND: unknown service; UNIMPLEMENTED: no health service
        message = f": {err.message}" if err.message else ""
        return ProbeResult(False, f"{where}: {err.status.name}{message}")
    except OSError as err:
        return ProbeResult(False, f"{where}: {err.strerror or err}")
    except Exception as err:  # h2 and grpclib raise many kinds; each is a failed probe
        return ProbeResult(False, f"{where}: {type(err).__name__}: {err}")
    finally:
        channel.close()
    status = HealthCheckResponse.ServingStatus.Name(reply.status)
    return ProbeResult(reply.status == HealthCheckResponse.SERVING, f"{where}: {status}")


def make_probe(
    spec: ProbeSpec,
    child: ChildProcess,
    *,
    stdio: McpStdioChannel | None = None,
    env: dict[str, str] | None = None,
) -> Probe:
    """A zero-argument coroutine function checking ``spec`` against ``child``."""

    async def process() -> ProbeResult:
        code = child.returncode
        return ProbeResult(code is None, "alive" if code is None else f"exited {code}")

    if spec.kind == "process":
        return process
    if spec.kind == "tcp":
        return lambda: _tcp(spec)
    if spec.kind == "http":
        return lambda: _http(spec)
    if spec.kind == "exec":
        return lambda: _exec(spec, dict(env or {}))
    if spec.kind == "websocket":
        return lambda: _websocket(spec)
    if spec.kind == "grpc":
        return lambda: _grpc(spec)
    if spec.transport == "http":
        return lambda: _mcp_http(spec)
    if stdio is None:
        raise ValueError("an mcp stdio probe needs the child's stdio channel")
    channel = stdio
    return lambda: channel.ping(spec.timeout_s)


class HealthHooks(Protocol):
    """What the monitor reports to the supervisor (all called on the event loop)."""

    def started(self, detail: str) -> None:
        """The child counts as started (its startup probe passed, or it has none)."""

    def healthy(self, detail: str) -> None:
        """A startup or liveness probe passed (a success for the breaker's half-open count)."""

    def unhealthy(self, role: str, detail: str) -> None:
        """A probe (``role``: startup or liveness) failed past its threshold."""

    def ready(self, ready: bool, detail: str) -> None:
        """The readiness probe's verdict changed."""

    def probed(self, check: ProbeCheck, changed: bool) -> None:
        """A probe ran (``check``); ``changed``: its outcome differs from its previous run's
        (or it is the first), which is what the events timeline records."""

    def settled(self) -> bool:
        """Whether another passing liveness check would change nothing (no half-open trial
        counting successes, no restart history waiting for a stable run to be forgotten):
        the default liveness then waits for the process's exit instead of its interval."""


#: A probe's detail is cut to this many characters (after redaction).
DETAIL_MAX = 300
#: Liveness when a spec declares none: "the process exists". It can fail only when the
#: process exits, which the child watcher reports as an event (``ChildProcess.exited``), so
#: it runs once a second only while a passing check still counts for the policy (a
#: half-open breaker's trial, restart history to forget: ``HealthHooks.settled``); then it
#: waits for the exit (issue 22 §7: an idle daemon must not wake once a second per service).
DEFAULT_LIVENESS = ProbeSpec(kind="process", interval_s=1.0, failure_threshold=1)


class HealthMonitor:
    """Runs one child's probes until it is cancelled or a probe gives up."""

    def __init__(
        self,
        spec: HealthSpec,
        child: ChildProcess,
        hooks: HealthHooks,
        *,
        stdio: McpStdioChannel | None = None,
        env: dict[str, str] | None = None,
        redact: Callable[[str], str] = str,
    ) -> None:
        self._spec = spec
        self._hooks = hooks
        self._child = child
        #: Applied to every probe's detail before anything sees it (the child's secrets).
        self._redact = redact
        #: One wake-up per probe loop (main, readiness), so one poke reaches both.
        self._pokes = (asyncio.Event(), asyncio.Event())
        self._liveness_spec = spec.liveness or DEFAULT_LIVENESS
        self._startup = (
            make_probe(spec.startup, child, stdio=stdio, env=env) if spec.startup else None
        )
        self._liveness = make_probe(self._liveness_spec, child, stdio=stdio, env=env)
        self._readiness = (
            make_probe(spec.readiness, child, stdio=stdio, env=env) if spec.readiness else None
        )
        #: role -> the latest check of that probe (what ``checks`` reports).
        self._last: dict[str, ProbeCheck] = {}

    def checks(self) -> tuple[ProbeCheck, ...]:
        """The latest result of each probe that has run, startup first."""
        order = {"startup": 0, "liveness": 1, "readiness": 2}
        return tuple(sorted(self._last.values(), key=lambda c: order.get(c.role, 9)))

    async def _check(self, role: str, spec: ProbeSpec, probe: Probe) -> ProbeResult:
        """Run ``probe`` once, recording its outcome and latency for ``checks``."""
        started = time.monotonic()
        result = await probe()
        detail = self._redact(result.detail)
        if len(detail) > DETAIL_MAX:
            detail = detail[: DETAIL_MAX - 1] + "…"
        result = ProbeResult(result.ok, detail)
        previous = self._last.get(role)
        failures = 0 if result.ok else (previous.consecutive_failures if previous else 0) + 1
        check = self._last[role] = ProbeCheck(
            role=role,
            kind=spec.kind,
            ok=result.ok,
            detail=result.detail,
            latency_ms=round((time.monotonic() - started) * 1000, 3),
            at=time.time(),
            consecutive_failures=failures,
        )
        self._hooks.probed(check, previous is None or previous.ok != check.ok)
        return result

    def poke(self) -> None:
        """Probe now instead of at the next interval (after a sleep/wake clock jump)."""
        for event in self._pokes:
            event.set()

    async def _pause(self, seconds: float, poke: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await within(poke.wait(), seconds)
        poke.clear()

    async def _until_exit(self, poke: asyncio.Event) -> None:
        """Until the child exits or ``poke`` is set (no timer)."""
        waiters: set[asyncio.Future[Any]] = {
            asyncio.ensure_future(poke.wait()),
            asyncio.shield(self._child.exited),  # cancelling the shield leaves it be
        }
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        poke.clear()

    async def run(self) -> None:
        """Run the probes until cancelled, calling the hooks on each verdict."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._main())
            if self._readiness is not None and self._spec.readiness is not None:
                group.create_task(self._ready_loop(self._readiness, self._spec.readiness))

    async def _main(self) -> None:
        if self._startup is not None and self._spec.startup is not None:
            spec = self._spec.startup
            await asyncio.sleep(spec.initial_delay_s)
            failures = 0
            while True:
                result = await self._check("startup", spec, self._startup)
                if result.ok:
                    break
                failures += 1
                if failures >= spec.failure_threshold:
                    self._hooks.unhealthy(
                        "startup", f"startup probe failed {failures}x: {result.detail}"
                    )
                    return
                await self._pause(spec.interval_s, self._pokes[0])
            self._hooks.started(f"startup probe passed: {result.detail}")
            self._hooks.healthy(result.detail)
        else:
            self._hooks.started("spawned")
            await asyncio.sleep(self._liveness_spec.initial_delay_s)
        spec = self._liveness_spec
        # The default ("the process exists") changes only when the process exits: once
        # checked and with nothing left for a passing check to count, it waits for that event
        # (or a poke) instead of its interval (see DEFAULT_LIVENESS). A declared probe keeps
        # its interval, whatever its kind.
        on_exit = self._spec.liveness is None
        checked = False
        failures = 0
        while True:
            if on_exit and checked and self._hooks.settled():
                await self._until_exit(self._pokes[0])
            else:
                await self._pause(spec.interval_s, self._pokes[0])
            checked = True
            result = await self._check("liveness", spec, self._liveness)
            if result.ok:
                failures = 0
                self._hooks.healthy(result.detail)
                continue
            failures += 1
            if failures >= spec.failure_threshold:
                self._hooks.unhealthy(
                    "liveness", f"liveness probe failed {failures}x: {result.detail}"
                )
                return

    async def _ready_loop(self, probe: Probe, spec: ProbeSpec) -> None:
        await asyncio.sleep(spec.initial_delay_s)
        failures = 0
        ready: bool | None = None
        while True:
            result = await self._check("readiness", spec, probe)
            failures = 0 if result.ok else failures + 1
            now_ready = result.ok or (ready is not False and failures < spec.failure_threshold)
            if now_ready != ready:
                ready = now_ready
                self._hooks.ready(ready, result.detail)
            await self._pause(spec.interval_s, self._pokes[1])
