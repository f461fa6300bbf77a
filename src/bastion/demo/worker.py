"""Demo service: a worker that prints a log line every interval, shipped for ``make run``.

``python -m bastion.demo.worker --interval 2``. Every line goes to stdout, every fifth also
to stderr as a warning, so the logs view has levels to filter. If ``DEMO_API_KEY`` is set
(the demo injects it from the vault), the worker prints it once: the supervisor's redaction
must turn it into ``[REDACTED:…]`` before it reaches the logs table. SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from types import FrameType


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bastion.demo.worker")
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args(argv)
    stopping = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        print(f"worker: got signal {signum}, finishing", flush=True)
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    key = os.environ.get("DEMO_API_KEY")
    if key:
        # Deliberate: shows that injected secrets are redacted in captured output.
        print(f"worker: using api key {key}", flush=True)
    tick = 0
    print("worker: started", flush=True)
    while not stopping.wait(args.interval):
        tick += 1
        print(f"worker: tick {tick}", flush=True)
        if tick % 5 == 0:
            print(f"worker: tick {tick} is a multiple of 5", file=sys.stderr, flush=True)
    print("worker: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
