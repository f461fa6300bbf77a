"""Idle cost of the daemon (issue 22 §7): ``bastion serve`` with N silent services, against a
bare FastAPI + uvicorn app idling in the same window. Target: <= 0.5% of one core.

A desktop daemon must not drain a battery: with nothing happening it should sleep until
something does (a line on a pipe, a request, a child's exit, a file change), not wake on a
timer. What is measured is CPU *time* (user + system, every thread, from the kernel's
accounting via psutil, before and after each window): other load on the machine makes the
window's wall time noisy but barely moves the CPU time each process used.

Two figures for the daemon: the process itself (what the target is about), and its process
tree -- the daemon plus every descendant: the parent-death shims of ``pipe`` mode (bastion's
code too) and the services' own programs (silent ``sleep``s here, so about nothing).
``--rounds`` windows run back to back on the same processes; each is printed, then the
median and the range, and the median's ratio to the target (<= 1.00x meets it).

Run: ``.venv/bin/python bench/idle.py [--services 10] [--seconds 60] [--rounds 3]
[--parent-death auto]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import psutil

BARE = """
import sys
import uvicorn
from fastapi import FastAPI

app = FastAPI()

@app.get("/health")
def health():
    return {"ok": True}

config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
server = uvicorn.Server(config)
print("ready", flush=True)
server.run()
"""

TARGET_PCT = 0.5


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def tree_seconds(procs: list[psutil.Process]) -> float:
    """CPU seconds of ``procs`` (a process that ended meanwhile counts what it had used)."""
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += cpu_seconds(proc)
    return total


def wait_running(url: str, token: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(
        f"{url}/v1/services", headers={"Authorization": f"Bearer {token}"}
    )
    running = 0
    while time.monotonic() < deadline:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.load(response)
        items = body["items"] if isinstance(body, dict) else body
        running = sum(1 for s in items if s["state"] == "running")
        if running >= count:
            return
        time.sleep(0.2)
    raise SystemExit(f"only {running}/{count} services running after {timeout:g}s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--rounds", type=int, default=3, help="measuring windows, back to back")
    parser.add_argument("--parent-death", default="auto", choices=["auto", "pdeathsig", "pipe"])
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bastion-bench-idle-"))
    home = tmp / "home"
    services = home / "services"
    services.mkdir(parents=True, mode=0o700)
    home.chmod(0o700)
    sleeper = shutil.which("sleep") or "/bin/sleep"
    for i in range(args.services):
        (services / f"quiet{i:02d}.toml").write_text(
            textwrap.dedent(
                f"""\
                argv = [{json.dumps(sleeper)}, "100000"]
                autostart = true
                """
            )
        )
    env = {
        **os.environ,
        "BASTION_HOME": str(home),
        "BASTION_SUPERVISOR_PARENT_DEATH": args.parent_death,
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    bare_file = tmp / "bare.py"
    bare_file.write_text(BARE)

    daemon = subprocess.Popen(
        [sys.executable, "-m", "bastion", "serve", "--port", "0", "--log-level", "warning"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    bare = subprocess.Popen(
        [sys.executable, str(bare_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert daemon.stdout is not None
        assert bare.stdout is not None
        handshake = json.loads(daemon.stdout.readline())
        bare.stdout.readline()
        url = f"http://127.0.0.1:{handshake['port']}"
        token = (home / "run" / "token").read_text().strip()
        wait_running(url, token, args.services, timeout=120)
        time.sleep(args.settle)  # start-up work (first probes, descendant scans) is over

        daemon_proc = psutil.Process(daemon.pid)
        bare_proc = psutil.Process(bare.pid)
        rounds: list[dict[str, float]] = []
        threads = tree_size = 0
        for _ in range(args.rounds):
            tree = [daemon_proc, *daemon_proc.children(recursive=True)]
            before = {
                "daemon": cpu_seconds(daemon_proc),
                "tree": tree_seconds(tree),
                "bare": cpu_seconds(bare_proc),
            }
            wall0 = time.monotonic()
            time.sleep(args.seconds)
            wall = time.monotonic() - wall0
            after = {
                "daemon": cpu_seconds(daemon_proc),
                "tree": tree_seconds(tree),
                "bare": cpu_seconds(bare_proc),
            }
            rounds.append({k: (after[k] - before[k]) / wall * 100 for k in before} | {"wall": wall})
            threads = daemon_proc.num_threads()
            tree_size = len(tree)
    finally:
        for proc in (daemon, bare):
            proc.send_signal(signal.SIGTERM)
        for proc in (daemon, bare):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    load = os.getloadavg()
    print(
        f"idle, {args.services} silent services, {args.rounds} x {args.seconds:g} s windows "
        f"(parent_death={args.parent_death}; {threads} daemon threads, {tree_size} processes "
        f"in its tree; load average {load[0]:.2f} {load[1]:.2f})"
    )
    print("  round   bare FastAPI   bastion serve   its tree   (% of one core)")
    for i, r in enumerate(rounds, 1):
        print(f"  {i:5d}   {r['bare']:11.3f}   {r['daemon']:13.3f}   {r['tree']:8.3f}")

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    def spread(key: str) -> str:
        values = [r[key] for r in rounds]
        return f"{min(values):.3f}-{max(values):.3f}"

    ours = median("daemon")
    print(
        f"  median  {median('bare'):11.3f}   {ours:13.3f}   {median('tree'):8.3f}   "
        f"(range: bare {spread('bare')}, serve {spread('daemon')}, tree {spread('tree')})"
    )
    print(
        f"  bastion serve: {ours:.3f}% of a core = {ours / TARGET_PCT:.2f}x the target "
        f"(<= {TARGET_PCT}%); {ours / max(args.services, 1):.4f}% per service; "
        f"tree {median('tree') / TARGET_PCT:.2f}x the target"
    )


if __name__ == "__main__":
    main()
