"""The speech server as a bastion service, with the seed's exact supervision policy.

Seed 001, ``process_manager.rs``, and where each number lands in the spec:

====================================================  ==========================================
seed                                                  spec
====================================================  ==========================================
restart max 3 in a 5 min window                       ``restart.max_restarts = 3``,
                                                      ``restart.window_s = 300``
backoff 1 s -> 2 -> 4 -> ... -> 60 s (no jitter)      ``backoff_initial_s = 1``, ``factor = 2``,
                                                      ``backoff_max_s = 60``, ``jitter = 0``
circuit breaker: 3 failures open it                   ``breaker.failure_threshold = 3``
open 30 s (every time), then half-open;               ``breaker.open_timeout_s = 30``,
                                                      ``breaker.open_timeout_factor = 1``
2 successes close it                                  ``breaker.success_threshold = 2``
health: process exists + HTTP endpoint, every 10 s    exit is awaited (event-driven); liveness
                                                      ``http`` GET /health every 10 s
health layer 3: WebSocket accepts connections         readiness ``websocket`` ws://.../asr
                                                      every 10 s (ping -> {"status": "ok"})
start includes the health wait                        startup probe: ``http`` every 0.2 s, up
                                                      to 10 s
stop: SIGTERM, wait 5 s, then SIGKILL                 ``stop.signal = "SIGTERM"``,
                                                      ``stop.grace_s = 5`` (SIGKILL to the group)
stdout/stderr captured to the database                ``logs.capture = true`` (``logs`` table,
                                                      injected secrets redacted)
====================================================  ==========================================

The seed counts breaker failures (3 in a row) and restarts (3 per 5 min) separately, and so
does this spec: the third failure in a row opens the breaker (after two restarts, 1 s and 2 s
of backoff), before the restart budget is spent; a failed half-open trial re-opens it for the
same 30 s (bastion's default would double it).

The ElevenLabs key reaches the server as ``ELEVENLABS_API_KEY``, resolved from the vault at
each start (``secret:voice_tray/elevenlabs_api_key``); the server's environment is otherwise
empty apart from what is declared here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bastion.supervisor import ServiceSpec, parse_spec
from examples.voice_tray.secrets import ELEVENLABS_API_KEY, SCOPE

__all__ = ["AUTOTYPE", "NAME", "SEED_POLICY", "autotype_client_spec", "speech_server_spec"]

NAME = "speech-server"
AUTOTYPE = "autotype-client"
#: The directory that holds the ``examples`` package (the child runs ``-m`` from there).
ROOT = Path(__file__).resolve().parents[2]

#: Seed 001's policy, as spec tables.
SEED_POLICY: dict[str, Any] = {
    "restart": {
        "policy": "always",
        "max_restarts": 3,
        "window_s": 300,
        "backoff_initial_s": 1.0,
        "backoff_factor": 2.0,
        "backoff_max_s": 60.0,
        "jitter": 0.0,
    },
    "breaker": {
        "failure_threshold": 3,
        "open_timeout_s": 30.0,
        "open_timeout_factor": 1.0,
        "success_threshold": 2,
    },
    "stop": {"signal": "SIGTERM", "grace_s": 5.0},
    "logs": {"capture": True, "stdout_level": "info", "stderr_level": "warning"},
}


def speech_server_spec(
    port: int,
    *,
    fault_file: Path | None = None,
    health_interval_s: float = 10.0,
    python: str = sys.executable,
) -> ServiceSpec:
    """The speech server on ``127.0.0.1:port`` under the seed's policy."""
    url = f"http://127.0.0.1:{port}/health"
    env = {"PYTHONUNBUFFERED": "1"}
    if fault_file is not None:
        env["SPEECH_FAULT_FILE"] = str(fault_file)
    return parse_spec(
        NAME,
        {
            "argv": [python, "-m", "examples.voice_tray.speech_server", "--port", str(port)],
            "cwd": str(ROOT),
            "env": env,
            "secrets": {"ELEVENLABS_API_KEY": f"secret:{SCOPE}/{ELEVENLABS_API_KEY}"},
            "health": {
                "startup": {
                    "kind": "http",
                    "url": url,
                    "interval_s": 0.2,
                    "timeout_s": 1.0,
                    "failure_threshold": 50,
                },
                "liveness": {
                    "kind": "http",
                    "url": url,
                    "interval_s": health_interval_s,
                    "timeout_s": 2.0,
                    "failure_threshold": 1,
                },
                # The seed's layer 3, "WebSocket accepts connections": the stream the app
                # dictates over opens, answers and closes. Readiness, not liveness: a
                # refused stream marks the server not ready; the HTTP check decides restarts.
                "readiness": {
                    "kind": "websocket",
                    "url": f"ws://127.0.0.1:{port}/asr",
                    "send": "ping",
                    "expect": '"status": "ok"',
                    "interval_s": health_interval_s,
                    "timeout_s": 2.0,
                    "failure_threshold": 1,
                },
            },
            **SEED_POLICY,
        },
    )


def autotype_client_spec(
    server_port: int, output: Path, *, python: str = sys.executable
) -> ServiceSpec:
    """The auto-type client as a second service under the same restart and stop policy. Its
    health is the process (the seed's "simpler health check"): an exit is a failure; it gets
    no secret and an environment with nothing but what is declared here."""
    return parse_spec(
        AUTOTYPE,
        {
            "argv": [
                python,
                "-m",
                "examples.voice_tray.autotype_client",
                "--server-port",
                str(server_port),
                "--output",
                str(output),
            ],
            "cwd": str(ROOT),
            "env": {"PYTHONUNBUFFERED": "1"},
            **SEED_POLICY,
        },
    )
