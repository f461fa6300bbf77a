"""Real filesystem faults for tests: a small tmpfs the test mounts (root only), filled to the
last block or remounted read-only; and a command prefix that runs a process without root's
power to ignore file modes.

Tests using these carry ``@pytest.mark.root``: outside root they skip with the reason, and
under ``CI=true`` that skip fails the run (``conftest.py``), so CI always runs them.

Dropping privileges: the test's own interpreter lives under ``/root`` (0700), which
``nobody`` cannot reach, so the process under test keeps uid 0 but loses the capabilities
that let root ignore modes (``CAP_DAC_OVERRIDE``, ``CAP_DAC_READ_SEARCH``, ``CAP_FOWNER``,
dropped from the bounding set by ``setpriv``). A 0400 file or a 0500 directory owned by root
then refuses it exactly as it refuses its owning user; ``chmod`` by the owner still works.
:func:`dac_dropped` does the same for the test's own thread, for a while: the library is then
called in this process (where mutmut's mutants and coverage see it), not in a child.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

__all__ = [
    "DROP_DAC",
    "Mount",
    "bastion",
    "can_mount",
    "dac_dropped",
    "mounted_tmpfs",
    "needs_root",
]

#: Prefix for a command that must obey file modes although it runs as root.
DROP_DAC = [
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search,-fowner",
    "--inh-caps=-all",
    "--",
]


@functools.cache
def can_mount() -> str | None:
    """Why this process cannot mount a tmpfs and drop capabilities, or None if it can.

    Tried for real once per session (a container's root may lack ``CAP_SYS_ADMIN`` or
    ``CAP_SETPCAP``): a skip names what is missing, and under ``CI=true`` fails the run."""
    if not sys.platform.startswith("linux"):
        return "needs Linux (tmpfs, setpriv)"
    if os.geteuid() != 0:
        return "needs root to mount a tmpfs and to drop capabilities"
    if shutil.which("setpriv") is None or shutil.which("mount") is None:
        return "needs mount and setpriv (util-linux)"
    with tempfile.TemporaryDirectory(prefix="bastion-mount-probe-") as probe:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe],
            capture_output=True,
            text=True,
            check=False,
        )
        if mounted.returncode != 0:
            return f"cannot mount a tmpfs here: {mounted.stderr.strip()}"
        subprocess.run(["umount", probe], check=False)
    dropped = subprocess.run([*DROP_DAC, "true"], capture_output=True, text=True, check=False)
    if dropped.returncode != 0:
        return f"cannot drop capabilities with setpriv: {dropped.stderr.strip()}"
    return None


def needs_root() -> None:
    reason = can_mount()
    if reason is not None:
        pytest.skip(reason)


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


#: _LINUX_CAPABILITY_VERSION_3 (two 32-bit words), and the bits of CAP_DAC_OVERRIDE (1),
#: CAP_DAC_READ_SEARCH (2) and CAP_FOWNER (3): what DROP_DAC takes away.
_CAP_VERSION_3 = 0x20080522
_DAC_BITS = (1 << 1) | (1 << 2) | (1 << 3)


@contextlib.contextmanager
def dac_dropped() -> Iterator[None]:
    """Run the body without root's power to ignore file modes, in this thread only.

    The three capabilities leave the thread's effective set and stay in its permitted set,
    so they come back afterwards (capabilities are per thread on Linux: the rest of the
    process keeps them meanwhile). Call :func:`needs_root` first."""
    libc = ctypes.CDLL(None, use_errno=True)
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    kept = data[0].effective
    data[0].effective = kept & ~_DAC_BITS
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
    try:
        yield
    finally:
        data[0].effective = kept
        if libc.capset(ctypes.byref(header), data) != 0:
            raise OSError(ctypes.get_errno(), "capset failed: the capabilities stay dropped")


@dataclasses.dataclass
class Mount:
    """A tmpfs mounted by the test: fill it, free it, make it read-only and back."""

    path: Path
    _fill: Path = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self._fill = self.path / ".fill"

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bfree * st.f_frsize

    def fill(self, *, leave: int = 0) -> None:
        """Write zeros until the filesystem refuses (0 bytes free afterwards), then give
        back ``leave`` bytes (rounded up to whole blocks)."""
        fd = os.open(self._fill, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            block = b"\0" * 4096
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, block)
            with contextlib.suppress(OSError):
                while True:  # the last partial block
                    os.write(fd, b"\0")
            assert self.free_bytes() == 0
            if leave:
                size = os.fstat(fd).st_size
                os.ftruncate(fd, max(0, size - leave))
        finally:
            os.close(fd)

    def unfill(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._fill.unlink()

    def remount(self, mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)], check=True)


@contextlib.contextmanager
def mounted_tmpfs(where: Path, size: str = "4m") -> Iterator[Mount]:
    """Mount a fresh tmpfs of ``size`` at ``where`` (created); unmount it afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        check=True,
    )
    try:
        yield Mount(where)
    finally:
        # Remount rw first (a test may end read-only), then unmount; lazily if a process of
        # the test still holds a file there, so a failure never leaves the mount behind.
        subprocess.run(["mount", "-o", "remount,rw", str(where)], check=False)
        if subprocess.run(["umount", str(where)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)


def bastion(
    home: Path,
    *args: str,
    drop_dac: bool = False,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI (``python -m bastion``) on ``home`` in a child process."""
    command: Sequence[str] = [sys.executable, "-m", "bastion", *args]
    if drop_dac:
        command = [*DROP_DAC, *command]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    full_env.update({"BASTION_HOME": str(home), "NO_COLOR": "1"}, **(env or {}))
    try:
        return subprocess.run(
            list(command),
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        shown = " ".join(a if len(a) < 80 else a[:60] + "..." for a in args)
        raise AssertionError(f"`bastion {shown}` did not finish in {timeout} s") from err
