"""Idle cost of the daemon (issue 22 §7): ``bastion serve`` with N silent services, against a
bare FastAPI + uvicorn app idling in the same window. Target: <= 0.5% of one core.

A desktop daemon must not drain a battery: with nothing happening it should sleep until
something does (a line on a pipe, a request, a child's exit, a file change), not wake on a
timer. What is measured is CPU *time* (user + system, every thread of the process, from the
kernel's accounting), over the same wall-clock window for both processes: other load on the
machine makes the window's wall time noisy but barely moves the CPU time each process used.
The services' own processes (and the parent-death shims in ``pipe`` mode) are not counted:
they are the services' cost, not the daemon's.

Run: ``.venv/bin/python bench/idle.py [--services 10] [--seconds 60] [--parent-death auto]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
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

        procs = {"bastion serve": psutil.Process(daemon.pid), "bare": psutil.Process(bare.pid)}
        before = {k: cpu_seconds(p) for k, p in procs.items()}
        wall0 = time.monotonic()
        time.sleep(args.seconds)
        wall = time.monotonic() - wall0
        used = {k: cpu_seconds(p) - before[k] for k, p in procs.items()}
        threads = procs["bastion serve"].num_threads()
    finally:
        for proc in (daemon, bare):
            proc.send_signal(signal.SIGTERM)
        for proc in (daemon, bare):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    ours = used["bastion serve"] / wall * 100
    base = used["bare"] / wall * 100
    load = os.getloadavg()
    print(
        f"idle, {args.services} silent services, {wall:.1f} s window "
        f"(parent_death={args.parent_death}; load average {load[0]:.2f} {load[1]:.2f})"
    )
    print(f"  bare FastAPI + uvicorn      {base:6.3f}% of a core ({used['bare'] * 1000:.0f} ms)")
    print(
        f"  bastion serve               {ours:6.3f}% of a core "
        f"({used['bastion serve'] * 1000:.0f} ms, {threads} threads)   (target <= {TARGET_PCT}%)"
    )
    print(f"  per service                 {ours / max(args.services, 1):6.3f}% of a core")


if __name__ == "__main__":
    main()
