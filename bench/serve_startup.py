"""Daemon start-up (issue 22 §7): ``bastion serve`` launched to its handshake line, against a
bare FastAPI + uvicorn app launched to the one line it prints once listening, in the same
run; for ``bastion.db`` of about 1 MB and 150 MB (log rows, what a long-lived install holds).
Target: <= 1.2x, whatever the database's size.

Each launch is a fresh interpreter (what an app spawning the daemon pays); the best of N
runs is kept (the least disturbed by other load on the machine). The homes have no
services: what is timed is the daemon itself (imports, the home's open and its checks, the
API's set-up), not a child's start.

The open-time check of bastion.db runs read-only, on a thread started before the server
stack is imported (docs/operations.md, "When a database is damaged"): what is left of it
after the imports is what grows with the file.

Run: ``.venv/bin/python bench/serve_startup.py [--runs 7] [--sizes-mb 1,150]``
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARE = """
import asyncio, sys
import uvicorn
from fastapi import FastAPI

app = FastAPI()

@app.get("/health")
def health():
    return {"ok": True}

class Server(uvicorn.Server):
    async def startup(self, sockets=None):
        await super().startup(sockets)
        print('{"listening": true}', flush=True)

config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on",
                        loop="uvloop", http="httptools")
Server(config).run()
"""

TARGET = 1.2


def launch_to_line(argv: list[str], env: dict[str, str], timeout: float = 120.0) -> float:
    """Seconds from the spawn to the first line on stdout; the process is then stopped."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or (proc.poll() is not None and not buf):
                raise SystemExit(f"{argv[1:3]} printed no line (rc={proc.poll()})")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk and proc.poll() is not None:
                    raise SystemExit(f"{argv[1:3]} exited (rc={proc.returncode})")
                buf += chunk
        return time.perf_counter() - start
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sizes-mb", default="1,150")
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
            f"serve start-up to handshake, best of {args.runs} fresh interpreters "
            f"(load average {load[0]:.2f} {load[1]:.2f})"
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
            # Interleaved run by run, so a burst of load on the machine hits both sides alike.
            serve_argv = [py, script, "--home", str(home), "serve", "--port", "0"]
            bare_runs, serve_runs = [], []
            for _ in range(args.runs):
                bare_runs.append(launch_to_line([py, str(bare)], env))
                serve_runs.append(launch_to_line(serve_argv, env))
            bare_s, serve_s = min(bare_runs), min(serve_runs)
            print(
                f"  bastion.db {actual / 1e6:7.1f} MB   bare {bare_s * 1000:6.1f} ms   "
                f"serve {serve_s * 1000:6.1f} ms   {serve_s / bare_s:5.2f}x  (target <= {TARGET}x)"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
