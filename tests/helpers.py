"""Test helpers: waiting on conditions with a deadline on the monotonic clock, and the
environment of a home on the encrypted-file vault."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
from hypothesis import settings

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
    what: str = "condition",
) -> T:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


async def await_until(
    predicate: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
    what: str = "condition",
) -> T:
    """:func:`wait_until` for async tests: the event loop runs while it waits."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def file_vault_env(monkeypatch: pytest.MonkeyPatch | None = None) -> dict[str, str]:
    """The variables of a home whose vault is the encrypted-file backend under a fresh random
    key in ``BASTION_VAULT_KEY`` (its default ``vault.key_source = "env"``: no keychain, no
    passphrase prompt), for a child's environment or ``load_config(env=...)``.

    With ``monkeypatch`` they are also set in this process's environment, where the vault
    reads its key variable and an in-process CLI (``CliRunner``) its configuration."""
    env = {
        "BASTION_VAULT_BACKEND": "encrypted-file",
        "BASTION_VAULT_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    if monkeypatch is not None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
    return env


def with_nofile(soft: int, hard: int | None = None) -> list[str]:
    """A wrapper (argv prefix) that execs the program after it with ``RLIMIT_NOFILE`` set to
    ``(soft, hard)``; ``hard`` defaults to ``soft``. POSIX only."""
    code = (
        "import os, resource, sys; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {soft if hard is None else hard})); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    return [sys.executable, "-c", code]


def examples(n: int) -> int:
    """The example budget of a property that asks for ``n`` instead of hypothesis's default
    100: ``n`` in the normal suite, scaled with the loaded profile's budget otherwise (the
    ``mutate`` profile of `make mutate` runs a tenth; tests/conftest.py)."""
    return max(1, n * settings().max_examples // 100)  # settings(): the loaded profile


def remove_home_cgroup(db_path: Path) -> None:
    """What a test's supervisor left of its home's cgroup v2 (a daemon killed with -9 leaves
    ``bastion-<tag>``; its next start would sweep it): killed and removed, so no test leaves
    a cgroup behind on the machine. Linux, where cgroups were usable; nothing elsewhere."""
    from bastion.supervisor import _platform as plat

    if plat.SYSTEM != "linux":
        return
    from bastion.supervisor._platform import cgroup

    mount, ours = cgroup.find_mount(), cgroup.own_cgroup()
    if mount is not None and ours is not None:
        root = Path(mount) / ours.lstrip("/") / f"bastion-{plat.home_tag(db_path)}"
        if root.is_dir():
            cgroup.remove_cgroup(root)


class StartLine:
    """A start line for child processes racing on purpose, on pipes rather than a flag file
    the children poll: each child says it is ready (a byte on ``ready_fd``) and blocks reading
    its stdin; :meth:`go` waits until every child is ready, then closes the stdin pipe they
    all share, so they all see its end at the same moment.

    Start each child with ``**line.popen_kwargs()`` and ``line.ready_fd`` among its arguments;
    the child's part: ``os.write(fd, b"."); os.close(fd); sys.stdin.read()``. ``close()`` at
    the end (a ``finally``) closes what ``go`` did not.
    """

    def __init__(self) -> None:
        self._start_r, self._start_w = os.pipe()
        self._ready_r, self.ready_fd = os.pipe()
        self._open = {self._start_r, self._start_w, self._ready_r, self.ready_fd}

    def popen_kwargs(self) -> dict[str, Any]:
        return {"stdin": self._start_r, "pass_fds": (self.ready_fd,)}

    def go(self, children: int) -> None:
        """Wait until ``children`` said ready (AssertionError if they exit before), then
        release them at once."""
        self._close(self._start_r)
        self._close(self.ready_fd)  # only the children's copies are left: EOF once all exit
        got = 0
        while got < children:
            if not os.read(self._ready_r, 1):
                raise AssertionError(f"{children - got} of {children} children exited before ready")
            got += 1
        self._close(self._start_w)

    def close(self) -> None:
        for fd in list(self._open):
            self._close(fd)

    def _close(self, fd: int) -> None:
        if fd in self._open:
            self._open.discard(fd)
            os.close(fd)


def gone(pid: int) -> bool:
    """The process has exited (a zombie not yet reaped by its parent counts as gone)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


@contextlib.contextmanager
def daemon_handshake_here(run_dir: Path) -> Iterator[int]:
    """A daemon's handshake in ``run_dir`` naming this process, listening on the port it
    names (what ``runfiles.running_daemon`` believes); removed on exit. Yields the port."""
    from bastion.__about__ import __api_version__
    from bastion.runfiles import Handshake, write_handshake

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        write_handshake(
            run_dir,
            Handshake(
                pid=os.getpid(),
                port=port,
                started_at=dt.datetime.now(dt.UTC).isoformat(),
                version="t",
                api_version=__api_version__,
            ),
        )
        try:
            yield port
        finally:
            (run_dir / "daemon.json").unlink(missing_ok=True)
