"""Daemon start-up (issue 22 §7): ``bastion serve`` launched to its handshake line, against a
bare FastAPI + uvicorn app launched to the one line it prints once listening, in the same
run; for ``bastion.db`` of about 1 MB and 150 MB (log rows, what a long-lived install holds).
Target: <= 1.2x, whatever the database's size.

Each launch is a fresh interpreter (what an app spawning the daemon pays). The homes have no
services: what is timed is the daemon itself (imports, the home's open and its checks, the
API's set-up), not a child's start.

On a shared, loaded machine a single launch can take twice as long as the next: the two sides
are launched in pairs, alternating which goes first (A B, B A, ...), so a burst of load
falls on both; each pair gives a ratio. Printed per size: the median of the paired ratios
with their range (the spread), each side's median and best, and the ratio of the bests (the
least disturbed launches); on Linux also the ratio of the CPU time each process had used
when its line came (user + system, every thread: the open-time check's thread included),
which a loaded machine disturbs less than the wall clock, and the same for the main thread
alone (the start's critical path: the open-time check's thread runs beside it on another
core, and its CPU grows with the file).

``--phases`` also launches ``bastion serve`` through a wrapper that notes the time (from the
interpreter's start) at which each phase ends -- imports, ``Home.init``, the set-up between
the open and the app, ``create_app``, uvicorn's start to the handshake -- and prints each
phase's median: where the time beyond the bare app goes.

The open-time check of bastion.db runs read-only, on a thread started before the server
stack is imported (docs/operations.md, "When a database is damaged"): what is left of it
after the imports is what grows with the file.

``--imports`` launches it once more through a wrapper that notes the main thread's CPU spent
executing each module (its own body, what it imports excluded) and creating each dataclass,
up to the handshake: how much of the start is third parties' code, bastion's for
``create_app``, and the rest of bastion's (and of that, its dataclasses), with the costliest
of bastion's modules.

``--first-answer`` launches each side once more per pair and sends a first request the
moment the line is out (serve: ``GET /v1/status`` with the token, which reads the store; the
bare app: ``GET /health``): spawn to that answer, what a client waits for. The daemon leaves
some work for first use (each router's routes are analysed on its first request, each
response model built by its first answer: docs/operations.md); this says the handshake's
gain is not paid back on the first request.

Run: ``.venv/bin/python bench/serve_startup.py [--runs 9] [--sizes-mb 1,150] [--phases]
[--imports] [--first-answer]``
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

BARE = """
import asyncio, json, sys
import uvicorn
from fastapi import FastAPI

app = FastAPI()

@app.get("/health")
def health():
    return {"ok": True}

class Server(uvicorn.Server):
    async def startup(self, sockets=None):
        await super().startup(sockets)
        port = self.servers[0].sockets[0].getsockname()[1]  # as serve's handshake names it
        print(json.dumps({"listening": True, "port": port}), flush=True)

config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on",
                        loop="uvloop", http="httptools")
Server(config).run()
"""

#: ``bastion serve`` with a note of the time at the end of each phase (stderr, one
#: ``phase <name> <ms since the interpreter started>`` line each), then the handshake as usual.
PHASES = """
import importlib.abc, importlib.util, sys, time
T0 = time.perf_counter()

C0 = time.process_time()

def note(name):
    wall, cpu = (time.perf_counter() - T0) * 1000, (time.process_time() - C0) * 1000
    sys.stderr.write(f"phase {name} {wall:.1f} {cpu:.1f}\\n")

def hooks(server):
    import bastion.app as app_mod

    init = app_mod.Home.init.__func__
    # The routes are declared (create_app's route building) before the daemon waits for the
    # check, where a tree has declare_routes; an older one builds them in create_app.
    declare = getattr(server, "declare_routes", None)
    if declare is not None:

        def timed_declare(*args, **kwargs):
            note("server stack imports (the check's thread running)")
            declare(*args, **kwargs)
            note("routes declared: create_app's route building (the check's thread running)")

        server.declare_routes = timed_declare

    def timed_init(cls, *args, **kwargs):
        if declare is None:
            note("server stack imports (the check's thread running)")
        home = init(cls, *args, **kwargs)
        note("Home.init (waits for the check)")
        return home

    app_mod.Home.init = classmethod(timed_init)
    create = server.create_app

    def timed_create(*args, **kwargs):
        note("lock, token, bind, scheduler, archiver")
        app = create(*args, **kwargs)
        note("create_app")
        return app

    server.create_app = timed_create
    startup = server._Server.startup

    async def timed_startup(self, sockets=None):
        note("uvicorn set-up, event loop")
        await startup(self, sockets)
        note("lifespan, listen, handshake")

    server._Server.startup = timed_startup

class Finder(importlib.abc.MetaPathFinder):
    # The server stack is imported when the CLI imports it (after the check's thread has
    # started), as in a plain run; its functions are wrapped once it has loaded.
    def find_spec(self, name, path, target=None):
        if name != "bastion.api.server":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        exec_module = spec.loader.exec_module

        def exec_and_hook(module):
            exec_module(module)
            hooks(module)

        spec.loader.exec_module = exec_and_hook
        return spec

sys.meta_path.insert(0, Finder())
import bastion.app

init = bastion.app.OpenCheckAhead.__init__

def timed_check_start(self, cfg):
    note("CLI imports, options, config")
    init(self, cfg)

bastion.app.OpenCheckAhead.__init__ = timed_check_start
import bastion.cli as cli
sys.argv = ["bastion", *sys.argv[1:]]
cli.main()
"""

#: ``bastion serve`` with the main thread's CPU noted per module executed (its own body, the
#: modules it imports excluded) and per dataclass created, up to the handshake; one JSON line
#: ``imports {...}`` on stderr when uvicorn's start has returned. The start's critical path
#: is the main thread, and nearly all of it is executing modules: this says which.
IMPORTS = """
import dataclasses, importlib._bootstrap as boot, importlib.abc, importlib.util, json, sys
import threading, time

MAIN = threading.main_thread()
selfcpu, stack, classes = {}, [], {}
load = boot._load_unlocked

def timed_load(spec):
    if threading.current_thread() is not MAIN:
        return load(spec)
    t0 = time.thread_time()
    stack.append(0.0)
    try:
        return load(spec)
    finally:
        took, inner = time.thread_time() - t0, stack.pop()
        selfcpu[spec.name] = selfcpu.get(spec.name, 0.0) + took - inner
        if stack:
            stack[-1] += took

boot._load_unlocked = timed_load
process_class = dataclasses._process_class

def timed_class(cls, *args, **kwargs):
    if threading.current_thread() is not MAIN:
        return process_class(cls, *args, **kwargs)
    t0 = time.thread_time()
    try:
        return process_class(cls, *args, **kwargs)
    finally:
        mod = cls.__module__
        n, took = classes.get(mod, (0, 0.0))
        classes[mod] = (n + 1, took + time.thread_time() - t0)

dataclasses._process_class = timed_class

def hooks(server):
    startup = server._Server.startup

    async def noted(self, sockets=None):
        await startup(self, sockets)
        note = {"modules": selfcpu, "dataclasses": classes, "main": time.thread_time()}
        sys.stderr.write("imports " + json.dumps(note) + "\\n")
        sys.stderr.flush()

    server._Server.startup = noted

class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "bastion.api.server":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        exec_module = spec.loader.exec_module

        def exec_and_hook(module):
            exec_module(module)
            hooks(module)

        spec.loader.exec_module = exec_and_hook
        return spec

sys.meta_path.insert(0, Finder())
import bastion.cli as cli
sys.argv = ["bastion", *sys.argv[1:]]
cli.main()
"""

#: bastion's modules that ``create_app`` and the lifespan import (the routes, the dashboard,
#: the metrics' wiring, the lifespan's supervision): reported apart from the rest of
#: bastion's, which the start needs before them.
APP_MODULES = (
    "bastion.api.app",
    "bastion.api.routes",
    "bastion.api.dashboard",
    "bastion.api.metrics",
    "bastion.api.metrics_series",
    "bastion.api.metrics_collector",
    "bastion.api.supervision",
    "bastion.api.models",
    "bastion.api.errors",
    "bastion.api.sse",
    "bastion.api.fastapi_v1",
)

TARGET = 1.2
#: The PHASES wrapper's last note, written once uvicorn's start has returned.
LAST_PHASE = b"phase lifespan, listen, handshake "


def cpu_seconds(pid: int, *, main_thread: bool = False) -> float | None:
    """User + system CPU time ``pid`` has used so far, all its threads or only its main
    thread (Linux: /proc; else None). Less at the mercy of other load than the wall clock:
    a process waiting for a core is not charged for the wait."""
    stat = f"/proc/{pid}/task/{pid}/stat" if main_thread else f"/proc/{pid}/stat"
    try:
        fields = Path(stat).read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _first_line(
    proc: subprocess.Popen[bytes], argv: list[str], timeout: float, start: float
) -> tuple[bytes, float, tuple[float, float] | None, bytes]:
    """The first line ``proc`` writes on stdout, the seconds from ``start`` to it, the
    process's CPU seconds then (all threads, main thread), and its stderr up to then."""
    assert proc.stdout is not None
    assert proc.stderr is not None
    fd, efd = proc.stdout.fileno(), proc.stderr.fileno()
    buf, err = b"", b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or (proc.poll() is not None and not buf):
            tail = err.decode(errors="replace")[-2000:]
            raise SystemExit(f"{argv[1:3]} printed no line (rc={proc.poll()}):\n{tail}")
        ready, _, _ = select.select([fd, efd], [], [], left)
        if efd in ready:
            err += os.read(efd, 65536)
        if fd in ready:
            chunk = os.read(fd, 4096)
            if not chunk and proc.poll() is not None:
                raise SystemExit(f"{argv[1:3]} exited (rc={proc.returncode})")
            buf += chunk
            if b"\n" in buf:
                elapsed = time.perf_counter() - start
                return buf.split(b"\n", 1)[0], elapsed, cpu_of(proc.pid), err


def cpu_of(pid: int) -> tuple[float, float] | None:
    """(all threads, main thread) CPU seconds of ``pid`` so far, or None off Linux."""
    every, main = cpu_seconds(pid), cpu_seconds(pid, main_thread=True)
    return None if every is None or main is None else (every, main)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def launch_to_line(
    argv: list[str], env: dict[str, str], timeout: float = 120.0, *, last_note: bytes = b""
) -> tuple[float, tuple[float, float] | None, bytes]:
    """Seconds from the spawn to the first line on stdout, the process's CPU seconds then
    (all threads, main thread), and what it wrote on stderr by then; the process is then
    stopped. ``last_note``: a wrapper's stderr note written once uvicorn's start has
    returned, after the line: waited for (a loaded machine can take far longer than a
    moment between the two)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _, elapsed, cpu, err = _first_line(proc, argv, timeout, start)
        assert proc.stderr is not None
        efd = proc.stderr.fileno()
        deadline = time.monotonic() + timeout
        while True:
            if last_note:
                if b"\n" + last_note in b"\n" + err:
                    # The note's line may still be arriving: read to its end.
                    tail = (b"\n" + err).split(b"\n" + last_note, 1)[1]
                    if b"\n" in tail:
                        break
                wait = deadline - time.monotonic()
                if wait <= 0:
                    break  # the caller says what is missing
            else:
                wait = 0.05  # whatever else was written with the line
            if not select.select([efd], [], [], wait)[0]:
                if not last_note:
                    break
                continue
            chunk = os.read(efd, 65536)
            if not chunk:
                break
            err += chunk
        return elapsed, cpu, err
    finally:
        _stop(proc)


def launch_to_answer(
    argv: list[str], env: dict[str, str], path: str, token: Path | None, timeout: float = 120.0
) -> tuple[float, tuple[float, float] | None]:
    """Seconds from the spawn to the answer of ``GET path``, sent as soon as the first line
    (which names the port) is out, and the process's CPU seconds then; the time to a first
    answer, what a client waits for. ``token``: the file of a bearer token to send."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line, _, _, _ = _first_line(proc, argv, timeout, start)
        port = int(json.loads(line)["port"])
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token.read_text().strip()}")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            if response.status != 200:
                raise SystemExit(f"GET {path}: {response.status}")
        return time.perf_counter() - start, cpu_of(proc.pid)
    finally:
        _stop(proc)


def fill(home: Path, size_mb: int) -> int:
    """Grow bastion.db to about ``size_mb`` with log rows (what a long-lived install holds)."""
    from bastion.app import Home
    from bastion.config import load_config
    from bastion.domains.logs import LogRecord

    cfg = load_config(home, env={})
    with Home.init(cfg) as h:
        line = "x" * 900
        batch = 500
        n = 0
        while h.db.file_sizes()["db"] + h.db.file_sizes()["wal"] < size_mb * 1024 * 1024:
            h.logs.insert_batch(
                LogRecord(float(n + i), "info", "svc", "stdout", f"{n + i} {line}")
                for i in range(batch)
            )
            n += batch
    return (home / "bastion.db").stat().st_size


def phases_of(stderr: bytes) -> list[tuple[str, float, float]]:
    """(phase, wall ms, CPU ms of the whole process) from the wrapper's notes, in order."""
    out, last, last_cpu = [], 0.0, 0.0
    for line in stderr.decode(errors="replace").splitlines():
        if line.startswith("phase "):
            name, at, cpu = line[len("phase ") :].rsplit(" ", 2)
            out.append((name, float(at) - last, float(cpu) - last_cpu))
            last, last_cpu = float(at), float(cpu)
    return out


def imports_of(stderr: bytes) -> dict[str, Any]:
    """The ``imports`` note of the IMPORTS wrapper."""
    for line in stderr.decode(errors="replace").splitlines():
        if line.startswith("imports "):
            note: dict[str, Any] = json.loads(line[len("imports ") :])
            return note
    raise SystemExit("the imports wrapper wrote no note:\n" + stderr.decode(errors="replace"))


def print_imports(notes: list[dict[str, Any]]) -> None:
    """Medians over the launches: the main thread's CPU to the handshake, how much of it
    executing modules (third parties', bastion's for create_app, the rest of bastion's), the
    dataclasses bastion creates on the way, and the costliest of bastion's other modules."""

    def median_of(pick: Callable[[dict[str, Any]], float]) -> float:
        return statistics.median(pick(n) for n in notes) * 1000

    def ours(name: str) -> bool:
        return name == "bastion" or name.startswith("bastion.")

    def for_app(name: str) -> bool:
        return any(name == m or name.startswith(m + ".") for m in APP_MODULES)

    def total(n: dict[str, Any], keep: Callable[[str], bool]) -> float:
        return float(sum(v for k, v in n["modules"].items() if keep(k)))

    def classes(n: dict[str, Any], keep: Callable[[str], bool]) -> tuple[int, float]:
        picked = [v for k, v in n["dataclasses"].items() if keep(k)]
        return sum(c for c, _ in picked), sum(t for _, t in picked)

    def rest(name: str) -> bool:
        return ours(name) and not for_app(name)

    count = statistics.median(classes(n, rest)[0] for n in notes)
    print(
        f"      main thread's CPU to the handshake (median of {len(notes)}): "
        f"{median_of(lambda n: n['main']):6.1f} ms, of which executing modules "
        f"{median_of(lambda n: total(n, lambda k: True)):6.1f} ms:\n"
        f"        {median_of(lambda n: total(n, lambda k: not ours(k))):6.1f} ms  third parties' "
        "and the standard library's\n"
        f"        {median_of(lambda n: total(n, for_app)):6.1f} ms  bastion's for create_app "
        "and the lifespan (routes, dashboard, metrics, supervision)\n"
        f"        {median_of(lambda n: total(n, rest)):6.1f} ms  the rest of bastion's, of which "
        f"creating its {count:.0f} dataclasses "
        f"{median_of(lambda n: classes(n, rest)[1]):5.1f} ms"
    )
    names = {k for n in notes for k in n["modules"] if rest(k)}
    top = sorted(
        ((statistics.median(n["modules"].get(k, 0.0) for n in notes) * 1000, k) for k in names),
        reverse=True,
    )[:12]
    print("      bastion's costliest other modules (ms, own body):")
    for took, name in top:
        print(f"        {took:6.2f}  {name}")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:6.1f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9, help="pairs of launches per size")
    parser.add_argument("--sizes-mb", default="1,150")
    parser.add_argument(
        "--phases", action="store_true", help="also time serve's phases (more launches)"
    )
    parser.add_argument(
        "--first-answer",
        action="store_true",
        help="also time spawn to the answer of a first request (more launches)",
    )
    parser.add_argument(
        "--imports",
        action="store_true",
        help="also note the main thread's CPU per module executed and per dataclass created "
        "(more launches)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes_mb.split(",") if s.strip()]

    py = sys.executable
    tmp = Path(tempfile.mkdtemp(prefix="bastion-bench-serve-"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
        # An installed package has its bytecode compiled; compile both sides once, alike.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        bare = tmp / "bare_app.py"
        bare.write_text(BARE)
        wrapper = tmp / "serve_phases.py"
        wrapper.write_text(PHASES)
        importer = tmp / "serve_imports.py"
        importer.write_text(IMPORTS)
        import bastion

        subprocess.run(
            [py, "-m", "compileall", "-q", str(Path(bastion.__file__).parent), str(bare)],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        script = str(Path(py).parent / "bastion")
        load = os.getloadavg()
        print(
            f"serve start-up to handshake: {args.runs} pairs of fresh interpreters per size, "
            f"alternating which starts first (load average {load[0]:.2f} {load[1]:.2f})"
        )
        for size in sizes:
            home = tmp / f"home-{size}"
            actual = fill(home, size) if size else 0
            if not size:
                subprocess.run(
                    [py, script, "--home", str(home), "init"],
                    env=env,
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
            serve_args = ["--home", str(home), "serve", "--port", "0"]
            serve_argv = [py, script, *serve_args]
            # The fill leaves up to the whole file dirty in the page cache: written back while
            # the first launches run, it competed with them for the disk (the first pairs at
            # 150 MB came out far slower than later launches of the same daemon). Written out
            # first, then one untimed launch of each side (the WAL archiver's first start on
            # this home begins its generation: a one-time cost of a new home, not of a start).
            if hasattr(os, "sync"):
                os.sync()
            launch_to_line(serve_argv, env)
            launch_to_line([py, str(bare)], env)
            bare_runs: list[float] = []
            serve_runs: list[float] = []
            ratios: list[float] = []
            cpu_ratios: list[float] = []
            main_ratios: list[float] = []
            for i in range(args.runs):
                # Alternate the order (A B, B A): the second of a pair meets the first's
                # leftovers (page cache, a CPU just freed) as often on either side.
                if i % 2 == 0:
                    b, b_cpu, _ = launch_to_line([py, str(bare)], env)
                    s, s_cpu, _ = launch_to_line(serve_argv, env)
                else:
                    s, s_cpu, _ = launch_to_line(serve_argv, env)
                    b, b_cpu, _ = launch_to_line([py, str(bare)], env)
                bare_runs.append(b)
                serve_runs.append(s)
                ratios.append(s / b)
                if b_cpu and s_cpu and b_cpu[0] and b_cpu[1]:
                    cpu_ratios.append(s_cpu[0] / b_cpu[0])
                    main_ratios.append(s_cpu[1] / b_cpu[1])
            med = statistics.median(ratios)
            print(
                f"  bastion.db {actual / 1e6:7.1f} MB   serve/bare median of pairs {med:5.2f}x "
                f"(range {min(ratios):.2f}-{max(ratios):.2f}; target <= {TARGET}x)\n"
                f"      bare  median {ms(statistics.median(bare_runs))} ms  best "
                f"{ms(min(bare_runs))} ms\n"
                f"      serve median {ms(statistics.median(serve_runs))} ms  best "
                f"{ms(min(serve_runs))} ms   ratio of bests "
                f"{min(serve_runs) / min(bare_runs):5.2f}x"
            )
            if cpu_ratios:
                print(
                    f"      CPU time (user + system, all threads) to the line, serve/bare: "
                    f"median {statistics.median(cpu_ratios):5.2f}x "
                    f"(range {min(cpu_ratios):.2f}-{max(cpu_ratios):.2f})\n"
                    f"      CPU time of the main thread only (the path to the line; the check's "
                    f"thread runs beside it): median {statistics.median(main_ratios):5.2f}x "
                    f"(range {min(main_ratios):.2f}-{max(main_ratios):.2f})"
                )
            if args.first_answer:
                # Spawn to the answer of a first request sent the moment the line is out:
                # serve's GET /v1/status (token, the store read: what a client asks first),
                # the bare app's GET /health. What a client waits for, whatever the daemon
                # left for first use.
                token = home / "run" / "token"
                firsts: list[tuple[float, float]] = []
                first_cpus: list[float] = []
                for i in range(args.runs):
                    if i % 2 == 0:
                        b_at, b_cpu = launch_to_answer([py, str(bare)], env, "/health", None)
                        s_at, s_cpu = launch_to_answer(serve_argv, env, "/v1/status", token)
                    else:
                        s_at, s_cpu = launch_to_answer(serve_argv, env, "/v1/status", token)
                        b_at, b_cpu = launch_to_answer([py, str(bare)], env, "/health", None)
                    firsts.append((b_at, s_at))
                    if b_cpu and s_cpu and b_cpu[1]:
                        first_cpus.append(s_cpu[1] / b_cpu[1])
                ratios_first = [s_at / b_at for b_at, s_at in firsts]
                print(
                    f"      first answer (spawn to the answer of a request sent at the line; "
                    f"serve GET /v1/status, bare GET /health): serve/bare median "
                    f"{statistics.median(ratios_first):5.2f}x (range {min(ratios_first):.2f}-"
                    f"{max(ratios_first):.2f}); bare median "
                    f"{ms(statistics.median(b for b, _ in firsts))} ms, serve median "
                    f"{ms(statistics.median(s for _, s in firsts))} ms"
                )
                if first_cpus:
                    print(
                        f"      main thread's CPU to the first answer, serve/bare: median "
                        f"{statistics.median(first_cpus):5.2f}x "
                        f"(range {min(first_cpus):.2f}-{max(first_cpus):.2f})"
                    )
            if args.phases:
                per_phase: dict[str, tuple[list[float], list[float]]] = {}
                totals = []
                for _ in range(args.runs):
                    total, _, err = launch_to_line(
                        [py, str(wrapper), *serve_args], env, last_note=LAST_PHASE
                    )
                    totals.append(total)
                    for name, took, cpu in phases_of(err):
                        walls, cpus = per_phase.setdefault(name, ([], []))
                        walls.append(took)
                        cpus.append(cpu)
                print(
                    f"      serve's phases (median of {args.runs}; ms wall, ms CPU with the "
                    "range of the CPU):"
                )
                for name, (walls, cpus) in per_phase.items():
                    print(
                        f"        {statistics.median(walls):7.1f} {statistics.median(cpus):7.1f}"
                        f" ({min(cpus):5.1f}-{max(cpus):5.1f})  {name}"
                    )
                print(
                    f"        {ms(statistics.median(totals))}          spawn to handshake "
                    "(the rest: interpreter start, pipe)"
                )
            if args.imports:
                notes = []
                for _ in range(args.runs):
                    _, _, err = launch_to_line(
                        [py, str(importer), *serve_args], env, last_note=b"imports "
                    )
                    notes.append(imports_of(err))
                print_imports(notes)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
