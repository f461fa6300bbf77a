"""Demo service: a tiny HTTP echo server (stdlib only), shipped for ``make run`` and tests.

``python -m bastion.demo.echo --port N``. ``GET /health`` answers ``ok``; any other request
is answered with a JSON echo of its method, path, query and body. One log line per request
goes to stdout (the supervisor captures it into the logs table). SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType


class _Handler(BaseHTTPRequestHandler):
    server_version = "bastion-demo-echo"

    def _answer(self) -> None:
        length = min(int(self.headers.get("Content-Length") or 0), 64 * 1024)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        if self.path == "/health":
            payload = b"ok"
            ctype = "text/plain"
        else:
            payload = json.dumps({"method": self.command, "path": self.path, "body": body}).encode()
            ctype = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        if self.path != "/health":
            print(f"echo: {self.command} {self.path} -> 200", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bastion.demo.echo")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), _Handler)

    def stop(signum: int, _frame: FrameType | None) -> None:
        print(f"echo: got signal {signum}, stopping", flush=True)
        # shutdown() waits for serve_forever to return: call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"echo: listening on http://{args.host}:{args.port}", flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    print("echo: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
