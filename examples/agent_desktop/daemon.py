"""Spawning and stopping ``bastion serve`` the way a desktop shell (Tauri, Electron) does.

    with Daemon.spawn(cfg) as daemon:          # bastion serve --port 0 --exit-with-parent
        daemon.client.get("/v1/status")       # bearer token from run/token
    # SIGTERM on exit: services stopped by their policy, handshake removed, exit 0

The daemon prints its handshake (pid, port, started_at, version) as the first stdout line once
it listens, so the shell needs no fixed port and no polling. Its log goes to ``log_path``
(or nowhere); it is never read through a pipe nobody drains. ``--exit-with-parent``: an app
that dies without stopping it (a crash, kill -9) takes the daemon and its services with it,
as the TypeScript client's ``spawnBastion`` does; no daemon is left holding the home.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from bastion.client import DaemonClient
from bastion.config import Config
from bastion.runfiles import TOKEN_FILE, read_token

__all__ = ["Daemon"]


class Daemon:
    def __init__(self, process: subprocess.Popen[str], handshake: dict[str, Any], cfg: Config):
        self.process = process
        self.handshake = handshake
        self.cfg = cfg
        self.client = DaemonClient(int(handshake["port"]), read_token(cfg.run_dir / TOKEN_FILE))
        self.returncode: int | None = None

    @classmethod
    def spawn(
        cls, cfg: Config, *, env: dict[str, str] | None = None, log_path: Path | None = None
    ) -> Daemon:
        """Start ``bastion serve --port 0 --exit-with-parent`` for ``cfg.home`` and wait for
        its handshake."""
        environ = {**(os.environ if env is None else env), "BASTION_HOME": str(cfg.home)}
        log: IO[str] | int = subprocess.DEVNULL
        if log_path is not None:
            log = log_path.open("a", encoding="utf-8")
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "bastion", "serve", "--port", "0", "--exit-with-parent"],
                env=environ,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        finally:
            if not isinstance(log, int):
                log.close()  # the child holds its own descriptor
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until listening, or EOF if it failed
        if not line:
            code = process.wait(timeout=60)
            raise RuntimeError(f"bastion serve exited with status {code} before listening")
        return cls(process, json.loads(line), cfg)

    @property
    def pid(self) -> int:
        return int(self.handshake["pid"])

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (graceful: services stopped, handshake removed), then wait for the exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.returncode = self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.returncode

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
