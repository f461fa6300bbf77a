"""A small stand-in for the seed's WhisperLiveKit speech server: the supervised sidecar.

``python -m examples.voice_tray.speech_server --port 8765`` serves, on 127.0.0.1:

* ``GET /health`` -> ``200 {"status": "ok"}`` (the supervisor's HTTP probe);
* ``POST /transcribe`` with ``{"audio": "<text standing in for audio>"}`` ->
  ``{"text": ..., "confidence": ...}``;
* ``GET /transcriptions?after=N`` -> ``{"items": [texts after the Nth], "next": count}``: the
  feed the auto-type client (``autotype_client.py``) follows (``after=-1``: none, just the
  count, so a client that starts late does not type old dictation);
* ``ws://127.0.0.1:PORT/asr``: the seed's WebSocket (WhisperLiveKit streams over one). A text
  message ``ping`` is answered ``{"status": "ok"}``, any other text with its transcription;
  the close handshake is answered. The supervisor's readiness probe (health layer 3) opens
  it. RFC 6455 framing by hand, to stay on the standard library: unfragmented frames of at
  most 64 KiB, which is all this stand-in needs.

It logs to stdout/stderr like a real server does (the supervisor captures both into the
``logs`` table), including, on purpose, a careless line with its ElevenLabs key: third-party
servers do that, and the supervisor must redact it before it is stored.

A *fault file* (path in ``SPEECH_FAULT_FILE``) lets the tests break it the ways real servers
break; its content is read at start and at each health check:

* ``crash`` -- exit with status 3 right after starting (a crash loop);
* ``unhealthy`` -- ``/health`` answers 500 and ``/asr`` refuses the upgrade with 503 (alive
  but broken);
* ``no-stream`` -- only ``/asr`` refuses (503): the HTTP check passes, the stream does not;
* ``ignore-term`` -- ignore SIGTERM (a server stuck in shutdown; only SIGKILL ends it).

Standard library only, so it starts fast.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import signal
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

#: What was transcribed since start, in order (the auto-type client's feed).
_TRANSCRIPTS: list[str] = []
_LOCK = threading.Lock()
#: RFC 6455's handshake constant.
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_WS_MAX = 64 * 1024
_TEXT, _CLOSE, _PING, _PONG = 0x1, 0x8, 0x9, 0xA


def _fault() -> str:
    path = os.environ.get("SPEECH_FAULT_FILE")
    if not path:
        return ""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


class Handler(BaseHTTPRequestHandler):
    server_version = "speech-server/1"

    def _reply(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/asr":
            self._websocket()
        elif self.path.startswith("/transcriptions"):
            self._feed()
        elif self.path != "/health":
            self._reply(404, {"error": "not found"})
        elif _fault() == "unhealthy":
            self._reply(500, {"status": "model not loaded"})
        else:
            self._reply(200, {"status": "ok"})

    def _feed(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        try:
            after = int(query.get("after", ["0"])[0])
        except ValueError:
            self._reply(400, {"error": "after must be an integer"})
            return
        with _LOCK:
            count = len(_TRANSCRIPTS)
            items = [] if after < 0 else _TRANSCRIPTS[after:]
        self._reply(200, {"items": items, "next": count})

    def _websocket(self) -> None:
        key = self.headers.get("Sec-WebSocket-Key")
        if self.headers.get("Upgrade", "").lower() != "websocket" or not key:
            self._reply(400, {"error": "a WebSocket upgrade is expected on /asr"})
            return
        if _fault() in ("unhealthy", "no-stream"):
            # HTTP/1.1, as a WebSocket client reads the refusal of an upgrade.
            body = json.dumps({"status": "model not loaded"}).encode()
            self.log_request(503)
            self.wfile.write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            self.close_connection = True
            return
        digest = hashlib.sha1((key + _WS_GUID).encode(), usedforsecurity=False).digest()
        # Written by hand: the handler's own status line says HTTP/1.0, which has no upgrade
        # (and which a WebSocket client does not read).
        self.log_request(101)
        self.wfile.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + base64.b64encode(digest)
            + b"\r\n\r\n"
        )
        self.wfile.flush()
        self.close_connection = True
        while (frame := self._read_frame()) is not None:
            opcode, payload = frame
            if opcode == _CLOSE:
                self._send_frame(_CLOSE, payload[:2])
                return
            if opcode == _PING:
                self._send_frame(_PONG, payload)
            elif opcode == _TEXT:
                text = payload.decode("utf-8", "replace")
                answer = {"status": "ok"} if text == "ping" else {"text": text.strip().capitalize()}
                self._send_frame(_TEXT, json.dumps(answer).encode())

    def _read_frame(self) -> tuple[int, bytes] | None:
        """One client frame (masked, unfragmented): (opcode, payload); None at EOF or on a
        frame this stand-in does not take (then the connection just closes)."""
        head = self.rfile.read(2)
        if len(head) < 2:
            return None
        opcode, size = head[0] & 0x0F, head[1] & 0x7F
        if size == 126:
            size = struct.unpack(">H", self.rfile.read(2))[0]
        elif size == 127:
            size = struct.unpack(">Q", self.rfile.read(8))[0]
        if not head[1] & 0x80 or not head[0] & 0x80 or size > _WS_MAX:
            return None
        mask = self.rfile.read(4)
        data = self.rfile.read(size)
        return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(data))

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        size = len(payload)
        if size < 126:
            head = bytes([0x80 | opcode, size])
        else:
            head = bytes([0x80 | opcode, 126]) + struct.pack(">H", size)
        self.wfile.write(head + payload)
        self.wfile.flush()

    def do_POST(self) -> None:
        if self.path != "/transcribe":
            self._reply(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            audio = str(json.loads(self.rfile.read(length) or b"{}").get("audio", ""))
        except (ValueError, AttributeError):
            self._reply(400, {"error": 'send JSON {"audio": ...}'})
            return
        print(f"transcribed {len(audio)} bytes", flush=True)
        text = audio.strip().capitalize()
        with _LOCK:
            _TRANSCRIPTS.append(text)
        self._reply(200, {"text": text, "confidence": 0.93})

    def log_message(self, format: str, *args: object) -> None:
        # Access log on stdout (info); stderr is for trouble (captured as warnings).
        print(f"access: {format % args}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="speech_server")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    fault = _fault()
    print(f"speech server starting (pid {os.getpid()})", flush=True)
    if fault == "crash":
        print("fatal: model failed to load", file=sys.stderr, flush=True)
        return 3
    if fault == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    key = os.environ.get("ELEVENLABS_API_KEY", "")
    if key:
        # The careless line a real third-party server prints; the supervisor redacts it.
        print(f"tts: using Authorization: Bearer {key}", flush=True)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    if fault != "ignore-term":

        def on_term(signum: int, frame: object) -> None:
            print("SIGTERM: shutting down", flush=True)
            # shutdown() waits for serve_forever to return: call it off the serving thread.
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, on_term)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    print("speech server stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
