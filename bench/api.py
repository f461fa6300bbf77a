"""API benchmark (issue 7): ``GET /v1/settings/{key}`` on the daemon vs bare Starlette.

Both servers run as subprocesses on loopback with uvloop + httptools and read the same row
of the same SQLite file; the load is ``wrk`` (Debian) with keep-alive, 2 connections, one
thread. bastion's request goes through everything a real one does: Host/Origin/token checks,
the body/media-type rules, FastAPI routing and validation, the response model. The baseline
does the read and nothing else. Runs alternate (baseline, ours, ...) and the best of each is
kept, so background load on the machine hits both alike.

Run: ``.venv/bin/python bench/api.py [--seconds 3] [--runs 6] [--metrics | --metrics-only]``.
Target: ratio >= 0.8; with ``--metrics``, the daemon with ``[api] metrics`` on vs off >=
0.95, in ``--metrics-rounds`` paired rounds (ABBA order inside each; the median of the
rounds' own ratios of req/s and of the daemon's CPU per request, with their spread).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, pct, ratio_line
from bastion.app import Home
from bastion.config import load_config
from bastion.runfiles import TOKEN_FILE, read_token

KEY = "bench.theme"
HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server did not start")


def _wrk(url: str, seconds: int, headers: dict[str, str]) -> dict[str, float]:
    args = ["wrk", "-t1", "-c2", f"-d{seconds}s", "--latency"]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        raise SystemExit(f"{non2xx.group(1)} non-2xx responses from {url}:\n{out}")

    def lat(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
        return float(m.group(1)) * scale

    return {"rps": rps, "p50_ms": lat("50"), "p99_ms": lat("99"), "requests": total}


def _cpu_s(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


Target = tuple[subprocess.Popen[bytes], str, dict[str, str]]


def _metrics_rounds(args: argparse.Namespace, ons: list[Target], offs: list[Target]) -> None:
    """The daemon with metrics on vs off: paired rounds (each on one pair of daemons, the
    pairs in turn), ABBA order inside each (off on on off, then on off off on), each round's own ratios of req/s and of the daemon's CPU per
    request; the median round is the figure, with the rounds' range and middle half. A load
    change on the shared machine then falls on both sides of a round alike."""
    rps: list[float] = []
    cpu: list[float] = []
    cpu_on: list[float] = []  # the daemon's CPU seconds per request
    cpu_off: list[float] = []
    for i in range(args.metrics_rounds):
        on, off = ons[(i // 2) % len(ons)], offs[(i // 2) % len(offs)]  # each pair both orders
        sides: dict[str, list[float]] = {"on": [0.0, 0.0, 0.0], "off": [0.0, 0.0, 0.0]}
        order = ("off", "on", "on", "off") if i % 2 == 0 else ("on", "off", "off", "on")
        for side in order:
            proc, url, auth = on if side == "on" else off
            before = _cpu_s(proc.pid)
            run = _wrk(url, args.seconds, auth)
            totals = sides[side]
            totals[0] += run["requests"]
            totals[1] += run["requests"] / run["rps"] if run["rps"] else 0.0  # seconds run
            totals[2] += _cpu_s(proc.pid) - before
        on_t, off_t = sides["on"], sides["off"]
        rps.append((on_t[0] / on_t[1]) / (off_t[0] / off_t[1]))
        cpu.append((off_t[2] / off_t[0]) / (on_t[2] / on_t[0]))
        cpu_on.append(on_t[2] / on_t[0])
        cpu_off.append(off_t[2] / off_t[0])
    print(
        f"GET /v1/settings/{{key}}, daemon with metrics on vs off, {args.metrics_rounds} paired"
        f" rounds of 4 x {args.seconds}s (ABBA)"
    )
    print(
        f"  {'req/s on / off (median round)':<58} {median(rps):6.2f}x   (target >= 0.95x;"
        f" {_spread(rps)})"
    )
    print(
        f"  {'daemon CPU per request off / on (median round)':<58} {median(cpu):6.2f}x   "
        f"(target >= 0.95x; {_spread(cpu)})"
    )
    print(
        f"  daemon CPU per request (median round): on {median(cpu_on) * 1e6:.0f} us,"
        f" off {median(cpu_off) * 1e6:.0f} us"
    )


def _spread(values: list[float]) -> str:
    """The rounds' range and middle half: how far to trust the median on a shared machine."""
    ordered = sorted(values)
    q1, q3 = pct(ordered, 0.25), pct(ordered, 0.75)
    return f"rounds {ordered[0]:.2f}-{ordered[-1]:.2f}x, middle half {q1:.2f}-{q3:.2f}x"


def _daemon(home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bastion",
            "--home",
            str(home),
            "serve",
            "--port",
            "0",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdout is not None
    return proc, int(json.loads(proc.stdout.readline())["port"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="also run the daemon with [api] metrics = false and print on vs off",
    )
    parser.add_argument(
        "--metrics-only",
        action="store_true",
        help="only the metrics on vs off comparison (implies --metrics)",
    )
    parser.add_argument(
        "--metrics-rounds", type=int, default=12, help="paired rounds of metrics on vs off"
    )
    args = parser.parse_args()
    args.metrics = args.metrics or args.metrics_only
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk; `make test` installs it)")

    tmp = Path(tempfile.mkdtemp(prefix="bastion-bench-api-"))
    env = {k: v for k, v in os.environ.items() if k != "BASTION_HOME"}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # --metrics: four more daemons, alike but for [api] metrics, each on a home of its
        # own (one daemon per home) that nothing else reads, started off, on, on, off: an
        # A/A run (all off) showed the daemon started later costing up to ~6% more CPU per
        # request on a loaded machine, so rounds pair the first two, then the last two.
        if args.metrics:
            sides: dict[str, list[Target]] = {"on": [], "off": []}
            for k, side in enumerate(("off", "on", "on", "off")):
                side_cfg, side_token = _bench_home(tmp / f"home-{side}-{k}")
                metrics = "true" if side == "on" else "false"
                proc, side_port = _daemon(side_cfg.home, {**env, "BASTION_API_METRICS": metrics})
                procs.append(proc)
                url = f"http://127.0.0.1:{side_port}/v1/settings/{KEY}"
                side_auth = {"Authorization": f"Bearer {side_token}"}
                _wrk(url, 1, side_auth)  # warm (imports, first queries, connection pools)
                sides[side].append((proc, url, side_auth))
            _metrics_rounds(args, sides["on"], sides["off"])
            if args.metrics_only:
                return
        cfg, token = _bench_home(tmp / "home")
        ours, port = _daemon(cfg.home, env)
        procs.append(ours)
        base_port = _free_port()
        bare = subprocess.Popen(
            [sys.executable, str(HERE / "_bare_starlette.py"), str(cfg.db_path), str(base_port)],
            stderr=subprocess.DEVNULL,
        )
        procs.append(bare)
        _wait_listening(base_port, bare)
        url_ours = f"http://127.0.0.1:{port}/v1/settings/{KEY}"
        url_bare = f"http://127.0.0.1:{base_port}/v1/settings/{KEY}"
        auth = {"Authorization": f"Bearer {token}"}
        # Warm both (imports, first queries, connection pools).
        _wrk(url_bare, 1, {})
        _wrk(url_ours, 1, auth)
        best_bare: dict[str, float] = {"rps": 0.0}
        best_ours: dict[str, float] = {"rps": 0.0}
        for _ in range(args.runs):
            b = _wrk(url_bare, args.seconds, {})
            o = _wrk(url_ours, args.seconds, auth)
            best_bare = max(best_bare, b, key=lambda r: r["rps"])
            best_ours = max(best_ours, o, key=lambda r: r["rps"])
        print(
            f"GET /v1/settings/{{key}}, wrk keep-alive, 2 connections, {args.seconds}s x {args.runs} (best)"
        )
        print(
            f"  bare Starlette : {best_bare['rps']:8,.0f} req/s  p50 {best_bare['p50_ms']:.3f} ms"
            f"  p99 {best_bare['p99_ms']:.3f} ms"
        )
        print(
            f"  bastion daemon : {best_ours['rps']:8,.0f} req/s  p50 {best_ours['p50_ms']:.3f} ms"
            f"  p99 {best_ours['p99_ms']:.3f} ms"
        )
        print(
            ratio_line(
                "daemon vs bare Starlette (same read)",
                best_ours["rps"],
                best_bare["rps"],
                ">= 0.8x",
            )
        )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=60)
            if proc.stdout is not None:
                proc.stdout.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _bench_home(path: Path) -> tuple[Any, str]:
    """A fresh home holding the row read, and its token."""
    cfg = load_config(path, env={})
    with Home.init(cfg) as home:
        home.settings.set(KEY, {"mode": "dark", "accent": "#3366ff", "font_size": 13})
    return cfg, read_token(cfg.run_dir / TOKEN_FILE)


if __name__ == "__main__":
    main()
