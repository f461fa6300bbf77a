"""Tiny child programs for the supervisor tests, one per misbehaviour: ``python kids.py MODE ...``.

Run with ``sys.executable`` from an empty environment, so nothing here may rely on env vars
the supervisor does not declare.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import re
import select
import signal
import socket
import sys
import threading
import time
import urllib.parse
from pathlib import Path


def crash(code: str = "3") -> None:
    print("crashing", flush=True)
    sys.exit(int(code))


def crash_if(flag_file: str) -> None:
    """Crash while ``flag_file`` exists; otherwise run until stopped."""
    if os.path.exists(flag_file):
        sys.exit(3)
    threading.Event().wait()


def crash_leaving_worker(pid_file: str) -> None:
    """Fork a worker (same process group) that records its pid, then crash."""
    recorded, done = os.pipe()
    if os.fork() == 0:
        Path(pid_file + ".tmp").write_text(str(os.getpid()))
        os.replace(pid_file + ".tmp", pid_file)
        os.close(done)  # the parent's read returns: the pid is recorded
        threading.Event().wait()
    os.close(done)
    os.read(recorded, 1)  # until the forked worker has recorded its pid (EOF: it closed)
    sys.exit(5)


def serve_tcp(port_file: str, delay: str = "0") -> None:
    """Listen on an ephemeral port after ``delay`` seconds; write the port; accept forever."""
    time.sleep(float(delay))  # the slow starter: not ready before this
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", int(os.environ.get("PORT", "0"))))
    sock.listen(16)
    Path(port_file + ".tmp").write_text(str(sock.getsockname()[1]))
    os.replace(port_file + ".tmp", port_file)
    while True:
        conn, _ = sock.accept()
        conn.close()


def ignore_term(ready_file: str) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(ready_file).write_text(str(os.getpid()))
    while True:
        signal.pause()


def spam(count: str, secret_env: str = "") -> None:
    """``count`` numbered lines on stdout (and every 10th on stderr); with ``secret_env``,
    also the secret raw, base64 (alone and inside Basic auth) and URL-encoded."""
    out = sys.stdout.buffer
    n = int(count)
    if secret_env:
        value = os.environ[secret_env]
        for line in (
            f"raw {value} end",
            "b64 " + base64.b64encode(value.encode()).decode(),
            "basic " + base64.b64encode(f"user:{value}".encode()).decode(),
            "url " + urllib.parse.quote(value, safe=""),
            "form " + urllib.parse.urlencode({"token": value}),
        ):
            out.write(line.encode() + b"\n")
    chunk = []
    for i in range(n):
        chunk.append(b"line %d\n" % i)
        if len(chunk) == 1000:
            out.write(b"".join(chunk))
            chunk = []
        if i % 10 == 0:
            sys.stderr.buffer.write(b"err %d\n" % i)
    out.write(b"".join(chunk))
    out.flush()
    sys.stderr.flush()


def leaky(secret_env: str, line_max: str = "16384") -> None:
    """Print the secret in every form a program commonly emits, one per line, then cut it in
    two across two writes (a pause between them) right where a ``line_max`` split falls, then
    the same inside a JSON log line on stderr."""
    value = os.environ[secret_env]
    raw = value.encode()
    lower_hex = re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), urllib.parse.quote(value))
    forms = [
        value,
        urllib.parse.quote(value),  # keeps "/", encodes "+"
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote(value, safe=":/?=&+"),
        lower_hex,  # %2f, not %2F
        urllib.parse.quote_plus(value),
        urllib.parse.urlencode({"token": value}),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(b"x" + raw).decode(),
        base64.b64encode(b"user:" + raw).decode(),
        raw.hex(),
        raw.hex().upper(),
        json.dumps({"token": value}),
        json.dumps({"token": value}, ensure_ascii=False).replace("/", "\\/"),
    ]
    out = sys.stdout.buffer
    for i, form in enumerate(forms):
        out.write(f"form {i}: <{form}>\n".encode())
    out.flush()
    cut = int(line_max) - 10
    half = len(raw) // 2
    out.write(b"a" * cut + raw[:half])
    out.flush()
    time.sleep(0.3)  # the rest arrives in a later read
    out.write(raw[half:] + b" tail\n")
    out.flush()
    err = sys.stderr.buffer
    err.write(b'{"level": "error", "msg": "auth failed", "key": "' + raw[:half])
    err.flush()
    time.sleep(0.3)
    err.write(raw[half:] + b'"}\n')
    err.flush()


def babble(secret_env: str) -> None:
    """Listen on $PORT and answer every connection with the secret instead of HTTP."""
    value = os.environ[secret_env]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", int(os.environ["PORT"])))
    sock.listen(16)
    while True:
        conn, _ = sock.accept()
        conn.sendall(f"{value} is the key\r\n".encode())
        conn.close()


def double_fork(pid_file: str) -> None:
    """Fork twice; the grandchild leaves the session (``setsid``), records its pid and lives."""
    _double_fork(pid_file, leave_session=True)


def double_fork_in_group(pid_file: str) -> None:
    """Fork twice without ``setsid``: the grandchild (ignoring SIGTERM) stays in the group."""
    _double_fork(pid_file, leave_session=False)


def _double_fork(pid_file: str, *, leave_session: bool) -> None:
    if os.fork() == 0:
        if leave_session:
            os.setsid()
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            Path(pid_file + ".tmp").write_text(str(os.getpid()))
            os.replace(pid_file + ".tmp", pid_file)
            while True:
                signal.pause()
        os._exit(0)
    while True:
        signal.pause()


def escape_when_orphaned(pid_file: str, grandchild_file: str) -> None:
    """Record this pid; once the parent (the shim) is gone, double-fork a grandchild that
    leaves the session, ignores SIGTERM and records its pid: a process that was never in any
    tree a supervisor looked at, nor in the group. Only a cgroup still holds it."""
    parent = os.getppid()
    try:
        # Readable once the parent has exited (Linux: the only system with cgroups here).
        watch = os.pidfd_open(parent)
    except ProcessLookupError:
        watch = None  # gone already
    Path(pid_file + ".tmp").write_text(str(os.getpid()))
    os.replace(pid_file + ".tmp", pid_file)
    if watch is not None:
        select.select([watch], [], [])
        os.close(watch)
    _double_fork(grandchild_file, leave_session=True)


def signal_log(out_file: str) -> None:
    """Append the name of every HUP/USR1/USR2/TERM received to ``out_file``, one at a time
    in the order they are taken; exit on TERM. Taken with ``sigwait`` (blocked, so none is
    lost before "ready"): a Python handler can be interrupted by the next signal's handler,
    which then wrote a later signal's name first (a HUP to the group and a USR1 forwarded by
    the shim a moment later, logged USR1 then HUP)."""
    wanted = {signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    with open(out_file, "a") as out:
        out.write("ready\n")
    while True:
        signum = signal.sigwait(wanted)
        with open(out_file, "a") as out:
            out.write(signal.Signals(signum).name + "\n")
        if signum == signal.SIGTERM:
            sys.exit(0)


def secret_user(var: str, out_file: str, reload_file: str) -> None:
    """A program using the secret ``var``: prints it once (the redactor's business), writes
    its environment and pid to ``out_file``; on SIGHUP re-reads its secret from
    ``reload_file`` (as a program that fetches it anew would), prints it and counts the HUP
    in ``out_file``."""
    hups = 0

    def dump() -> None:
        data = {"env": dict(os.environ), "pid": os.getpid(), "hups": hups}
        Path(out_file + ".tmp").write_text(json.dumps(data))
        os.replace(out_file + ".tmp", out_file)

    def on_hup(_signum: int, _frame: object) -> None:
        nonlocal hups
        hups += 1
        print(f"reloaded {var}={Path(reload_file).read_text()}", flush=True)
        dump()

    signal.signal(signal.SIGHUP, on_hup)
    print(f"using {var}={os.environ.get(var, '')}", flush=True)
    if Path(reload_file).exists():  # a value it kept from before (a cache)
        print(f"cached {var}={Path(reload_file).read_text()}", flush=True)
    dump()
    while True:
        signal.pause()


def die_by(signame: str) -> None:
    """End by the named signal (default action), as a crashing program would."""
    signum = getattr(signal, signame)
    signal.signal(signum, signal.SIG_DFL)
    if signum == signal.SIGABRT:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file from a test
    os.kill(os.getpid(), signum)
    threading.Event().wait()


def fd_dump(out_file: str) -> None:
    """Write the fds this process was started with (``/dev/fd``) and stay up."""
    fds = sorted(int(fd) for fd in os.listdir("/dev/fd"))
    # listdir's own directory fd is closed again by now: keep only the ones still open.
    open_fds = [fd for fd in fds if _is_open(fd)]
    Path(out_file + ".tmp").write_text(json.dumps(open_fds))
    os.replace(out_file + ".tmp", out_file)
    while True:
        signal.pause()


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def env_dump(out_file: str) -> None:
    # /proc/self/environ is what the process was started with (Python's own locale
    # coercion may add LC_CTYPE to os.environ afterwards).
    raw = Path("/proc/self/environ").read_bytes()
    env = dict(item.split("=", 1) for item in raw.decode().split("\0") if item)
    Path(out_file + ".tmp").write_text(json.dumps(env))
    os.replace(out_file + ".tmp", out_file)
    while True:
        signal.pause()


def http_flip(port_file: str, flip_file: str) -> None:
    """Answer 200 on /health until ``flip_file`` exists, then 500."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = 500 if os.path.exists(flip_file) else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    http.server.ThreadingHTTPServer.allow_reuse_address = True
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", int(os.environ.get("PORT", "0"))), Handler
    )
    Path(port_file + ".tmp").write_text(str(server.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


def mcp_server(pid_file: str) -> None:
    """A real MCP server (the ``mcp`` package) on stdio."""
    from mcp.server.mcpserver import MCPServer

    app = MCPServer("bastion-test")

    @app.tool()
    def add(a: int, b: int) -> int:
        return a + b

    Path(pid_file).write_text(str(os.getpid()))
    app.run()


def mcp_http_server(port_file: str) -> None:
    """A real MCP server over streamable HTTP."""
    import uvicorn
    from mcp.server.mcpserver import MCPServer

    app = MCPServer("bastion-test-http")

    @app.tool()
    def add(a: int, b: int) -> int:
        return a + b

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    Path(port_file + ".tmp").write_text(str(sock.getsockname()[1]))
    os.replace(port_file + ".tmp", port_file)
    config = uvicorn.Config(app.streamable_http_app(), log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


def ws_echo(port_file: str) -> None:
    """A WebSocket server on $PORT (``websockets``): answers "ping" with "pong", echoes the
    rest, until ``port_file + '.stop'`` exists (then it refuses upgrades with a 503)."""
    import asyncio

    from websockets.asyncio.server import ServerConnection, serve
    from websockets.http11 import Request, Response

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send("pong" if message == "ping" else message)

    def gate(ws: ServerConnection, request: Request) -> Response | None:
        if os.path.exists(port_file + ".stop"):
            return ws.respond(503, "stopped\n")
        return None

    async def main() -> None:
        port = int(os.environ.get("PORT", "0"))
        async with serve(handler, "127.0.0.1", port, process_request=gate) as server:
            bound = next(iter(server.sockets)).getsockname()[1]
            Path(port_file + ".tmp").write_text(str(bound))
            os.replace(port_file + ".tmp", port_file)
            await server.serve_forever()

    asyncio.run(main())


def sleeper() -> None:
    threading.Event().wait()


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
