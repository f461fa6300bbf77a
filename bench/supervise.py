"""Restart and crash-detection latency of the supervisor against raw baselines, same run.

    .venv/bin/python bench/supervise.py [ROUNDS]

- restart: ``kill -9`` of a healthy TCP child until the supervisor reports it RUNNING again
  (startup probe passed), against (spawn-to-ready of the same child with a raw asyncio loop
  + the configured backoff). Target <= 1.2x.
- crash detection: ``kill -9`` to the EXITED transition (event-driven child wait), against
  a psutil-style poller checking every 100 ms. Target: median <= 5 ms.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bastion.config import StoreConfig
from bastion.store import Database
from bastion.supervisor import ServiceState, Supervisor, parse_spec

KIDS = str(Path(__file__).resolve().parents[1] / "tests" / "supervisor" / "kids.py")
BACKOFF = 0.05
PROBE_EVERY = 0.002


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _connects(port: int) -> bool:
    try:
        _r, w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    w.close()
    return True


async def raw_spawn_to_ready(port: int, tmp: Path) -> float:
    """Baseline: spawn the child, poll connect() every PROBE_EVERY until it answers."""
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, KIDS, "serve_tcp", str(tmp / "raw-port"), env={"PORT": str(port)}
    )
    while not await _connects(port):
        await asyncio.sleep(PROBE_EVERY)
    ready = time.perf_counter() - start
    proc.kill()
    await proc.wait()
    return ready


async def supervised(
    rounds: int, port: int, tmp: Path
) -> tuple[list[float], list[float], list[float]]:
    db = Database.open(tmp / "bench.db", StoreConfig(), name="bench")
    probe = {"kind": "tcp", "port": port, "interval_s": PROBE_EVERY, "timeout_s": 1.0}
    spec = parse_spec(
        "bench",
        {
            "argv": [sys.executable, KIDS, "serve_tcp", str(tmp / "port")],
            "env": {"PORT": str(port)},
            "health": {"startup": {**probe, "failure_threshold": 100_000}},
            "restart": {
                "backoff_initial_s": BACKOFF,
                "backoff_factor": 1.0,
                "jitter": 0.0,
                "max_restarts": 10_000,
                "window_s": 1.0,
            },
            "logs": {"capture": False},
        },
    )
    sup = Supervisor(db, [spec])
    await sup.open()
    await sup.start("bench")
    await sup.wait_state("bench", ServiceState.RUNNING)
    restarts, detections, raw = [], [], []
    raw_port = free_port()
    for _ in range(rounds):
        # Interleaved with the supervised rounds, so both see the same machine load.
        raw.append(await raw_spawn_to_ready(raw_port, tmp))
        pid = sup.status("bench").pid
        assert pid is not None
        queue = sup.subscribe(maxsize=0)
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        exited_at = running_at = None
        while running_at is None:
            event = await queue.get()
            if event["to"] == "exited":
                exited_at = event["ts"]
            elif event["to"] == "running":
                running_at = event["ts"]
        sup.unsubscribe(queue)
        assert exited_at is not None
        detections.append(exited_at - killed_at)
        restarts.append(running_at - killed_at)
    await sup.close()
    db.close()
    return restarts, detections, raw


def polling_detection(rounds: int) -> list[float]:
    """What a 100 ms poller (psutil style) sees: kill -9 at a random moment, then notice."""
    found = []
    for _ in range(rounds):
        proc = subprocess.Popen([sys.executable, KIDS, "sleeper"])
        seen = threading.Event()
        noticed: list[float] = []

        def poll(
            p: subprocess.Popen[bytes] = proc,
            noticed: list[float] = noticed,
            seen: threading.Event = seen,
        ) -> None:
            while p.poll() is None:
                time.sleep(0.1)
            noticed.append(time.time())
            seen.set()

        threading.Thread(target=poll, daemon=True).start()
        time.sleep(random.uniform(0.05, 0.15))
        killed = time.time()
        proc.kill()
        seen.wait(5)
        found.append(noticed[0] - killed)
    return found


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        restarts, detections, raw = asyncio.run(supervised(rounds, port, tmp))
    polled = polling_detection(max(5, rounds // 2))
    base = statistics.median(raw) + BACKOFF
    ours = statistics.median(restarts)
    print(
        f"rounds: {rounds}; backoff {BACKOFF * 1000:.0f} ms; probe every {PROBE_EVERY * 1000:.0f} ms"
    )
    print(
        f"{'restart after kill -9 to healthy vs spawn-to-ready + backoff':<62} "
        f"{ours / base:5.2f}x   (target <= 1.2x; ours {ours * 1000:.1f} ms median vs "
        f"{statistics.median(raw) * 1000:.1f} + {BACKOFF * 1000:.0f} ms)"
    )
    print(
        f"{'crash detected (kill -9 -> EXITED), median':<62} "
        f"{statistics.median(detections) * 1000:5.2f} ms (target <= 5 ms; "
        f"100 ms poller: {statistics.median(polled) * 1000:.1f} ms median)"
    )


if __name__ == "__main__":
    main()
