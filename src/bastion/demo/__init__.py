"""Demo data for ``make run``: two services shipped in the package and a few settings.

- ``demo-echo``: :mod:`bastion.demo.echo`, a tiny HTTP echo server with an HTTP health probe.
- ``demo-worker``: :mod:`bastion.demo.worker`, prints a log line every two seconds.

:func:`seed_services` writes their specs to ``<home>/services/`` (atomically, 0600) with the
interpreter running now, so they start from the same virtualenv. Idempotent: existing spec
files are left as they are (an operator may have edited them).
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from bastion._fs import atomic_write, ensure_private_dir
from bastion.config import Config

__all__ = ["DEMO_SERVICES", "free_port", "seed_services", "service_specs"]

DEMO_SERVICES = ("demo-echo", "demo-worker")


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the demo echo server's, chosen at seed time)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def service_specs(
    *, python: str | None = None, echo_port: int | None = None, worker_interval: float = 2.0
) -> dict[str, str]:
    """The demo services' TOML text by name."""
    py = _toml_str(python or sys.executable)
    port = echo_port or free_port()
    echo = f"""# Demo: a tiny HTTP echo service (bastion.demo.echo).
argv = [{py}, "-m", "bastion.demo.echo", "--port", "{port}"]

[health.liveness]
kind = "http"
url = "http://127.0.0.1:{port}/health"
interval_s = 5
timeout_s = 2
initial_delay_s = 0.5

[stop]
signal = "SIGTERM"
grace_s = 5
"""
    worker = f"""# Demo: a worker printing a log line every {worker_interval:g} s (bastion.demo.worker).
argv = [{py}, "-m", "bastion.demo.worker", "--interval", "{worker_interval:g}"]

[stop]
signal = "SIGTERM"
grace_s = 5
"""
    return {"demo-echo": echo, "demo-worker": worker}


def seed_services(
    cfg: Config, *, python: str | None = None, worker_interval: float = 2.0
) -> list[Path]:
    """Write the demo services' spec files that do not exist yet; return all their paths."""
    ensure_private_dir(cfg.services_dir)
    paths = []
    specs = service_specs(python=python, worker_interval=worker_interval)
    for name, text in specs.items():
        path = cfg.services_dir / f"{name}.toml"
        if not path.exists():
            atomic_write(path, text)
        paths.append(path)
    return paths
