"""Start a real ``bastion serve --port 0`` subprocess and read its handshake."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bastion.client import DaemonClient
from bastion.runfiles import TOKEN_FILE, read_token
from tests.helpers import remove_home_cgroup


class RunningDaemon:
    def __init__(
        self,
        home: Path,
        *args: str,
        env: dict[str, str] | None = None,
        token_from_vault: bool = False,
        wrap: list[str] | None = None,
        program: list[str] | None = None,
    ) -> None:
        """``program``: what runs the CLI instead of ``python -m bastion`` (a wrapper script
        that observes the real daemon, e.g. tests/api/test_serve_startup.py)."""
        self.home = home
        self.log_path = home.parent / f"{home.name}-daemon.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, **(env or {})}
        full_env.pop("BASTION_HOME", None)
        self.proc = subprocess.Popen(
            [
                *(wrap or []),
                *(program or [sys.executable, "-m", "bastion"]),
                "--home",
                str(home),
                "serve",
                "--port",
                "0",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=full_env,
        )
        try:
            self.first_line = self._read_line(timeout=60)
        except BaseException:
            self.close()
            raise
        self.handshake: dict[str, Any] = json.loads(self.first_line)
        self.port: int = self.handshake["port"]
        if token_from_vault:
            from bastion.client import DaemonClient as _Client
            from bastion.config import load_config

            found = _Client.for_home(load_config(home))
            assert found is not None
            self.token = found._token
        else:
            self.token = read_token(home / "run" / TOKEN_FILE)
        self.client = DaemonClient(self.port, self.token, timeout=30)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _read_line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        buf = b""
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise AssertionError(
                    f"daemon printed no handshake (rc={self.proc.poll()}); log:\n{self.log()}"
                )
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1)
                if not chunk:
                    continue
                buf += chunk
        return buf.decode()

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        remove_home_cgroup(self.home / "bastion.db")  # what the killed daemon left
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
