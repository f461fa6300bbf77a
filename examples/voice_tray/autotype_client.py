"""The seed's auto-type client: types what the speech server transcribes, as a second service.

``python -m examples.voice_tray.autotype_client --server-port 8765 --output typed.txt``
follows the speech server's ``GET /transcriptions`` feed and "types" each new text. A real
tray sends key events (xdotool, enigo); here typing appends the text and a newline to
``--output``, so a test can see exactly what was typed and how many times.

It starts from the feed's current end (dictation from before it started is not typed late),
retries while the server is down or restarting (a warning on stderr, no crash), and exits 0
on SIGTERM. Standard library only. bastion supervises it like the server (``service.py``:
``autotype_client_spec``); the seed gave it "a simpler health check than the server", so
its health is the process itself (exit detected; restart with the seed's backoff).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - loopback http only
        return json.loads(answer.read())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="autotype_client")
    parser.add_argument("--server-port", type=int, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=0.2)
    args = parser.parse_args(argv)
    base = f"http://127.0.0.1:{args.server_port}/transcriptions"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    print(f"auto-type client starting (pid {os.getpid()})", flush=True)
    position: int | None = None
    down = False
    while not stop.is_set():
        try:
            if position is None:
                position = int(_get(f"{base}?after=-1")["next"])
                print(f"following the speech server from transcription {position}", flush=True)
            feed = _get(f"{base}?after={position}")
        except (OSError, urllib.error.URLError, ValueError, KeyError) as err:
            if not down:
                print(
                    f"speech server unreachable ({type(err).__name__}); retrying",
                    file=sys.stderr,
                    flush=True,
                )
                down = True
            position = None  # a restarted server starts its feed again
            stop.wait(args.interval)
            continue
        down = False
        for text in feed["items"]:
            with args.output.open("a", encoding="utf-8") as out:
                out.write(text + "\n")
            print(f"typed {len(text)} characters", flush=True)
        position = int(feed["next"])
        stop.wait(args.interval)
    print("auto-type client stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
