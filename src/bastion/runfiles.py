"""The daemon's files in ``<home>/run/`` (0700): the API token, the handshake and the lock.

- ``run/token``: a random 256-bit bearer token, created once at ``init`` (0600). Every API
  route except ``GET /health`` requires it.
- ``run/daemon.json``: the handshake (pid, port, started_at, version, api_version), written atomically by
  ``bastion serve`` only *after* its sockets listen, and removed on a clean shutdown. A desktop
  app that spawned the daemon, and the CLI, read it to find the daemon.
- ``run/daemon.lock``: an OS lock (``flock``; ``msvcrt.locking`` on Windows) held for the daemon's lifetime, so a home has at
  most one daemon. The kernel releases it when the process dies, however it dies, so a lock
  left by a ``kill -9`` is free to take: only a leftover handshake needs cleaning up. It is a
  ``bastion._lockfile.LockFile``, so a child forked without exec does not keep it either.

This module is shared by the server (``bastion.api.server``), the client (``bastion.client``)
and ``Home.init``; it imports nothing heavy so CLI start-up stays fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
from pathlib import Path
from typing import Any

from bastion import _platform
from bastion._fs import atomic_write, ensure_private_dir
from bastion._lockfile import LockFile, LockTimeout
from bastion.errors import ConfigError, DaemonAlreadyRunning

__all__ = [
    "HANDSHAKE_FILE",
    "LOCK_FILE",
    "TOKEN_FILE",
    "TOKEN_NAME",
    "TOKEN_SCOPE",
    "DaemonLock",
    "Handshake",
    "ensure_token",
    "listens_on",
    "new_token",
    "pid_alive",
    "read_handshake",
    "read_token",
    "remove_handshake",
    "running_daemon",
    "write_handshake",
]

TOKEN_FILE = "token"  # noqa: S105 - a file name, not a secret
#: Where the token is kept with ``api.token_store = "vault"``: ``secret:bastion/api-token``.
TOKEN_SCOPE = "bastion"  # noqa: S105 - a scope name, not a secret
TOKEN_NAME = "api-token"  # noqa: S105 - a secret's name, not a secret
HANDSHAKE_FILE = "daemon.json"
LOCK_FILE = "daemon.lock"
#: 256 bits of randomness, URL-safe base64 (43 characters).
TOKEN_BYTES = 32


@dataclasses.dataclass(frozen=True, slots=True)
class Handshake:
    """What a running daemon tells the world about itself. Never contains the token."""

    pid: int
    port: int
    started_at: str
    version: str
    hosts: tuple[str, ...] = ("127.0.0.1",)
    #: The HTTP API's semver (``bastion.__about__.__api_version__``); "" from a daemon older
    #: than the field.
    api_version: str = ""

    @property
    def url(self) -> str:
        """The daemon's base URL on the IPv4 loopback."""
        return f"http://127.0.0.1:{self.port}"

    def to_json(self) -> str:
        """The handshake as the one JSON line the daemon prints and writes."""
        data = dataclasses.asdict(self)
        data["hosts"] = list(self.hosts)
        data["url"] = self.url
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Handshake:
        """A handshake from its JSON form (the file's content)."""
        return cls(
            pid=int(data["pid"]),
            port=int(data["port"]),
            started_at=str(data["started_at"]),
            version=str(data["version"]),
            hosts=tuple(str(h) for h in data.get("hosts", ("127.0.0.1",))),
            api_version=str(data.get("api_version", "")),
        )


def new_token() -> str:
    """A fresh random 256-bit token (URL-safe base64, 43 characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def ensure_token(run_dir: Path) -> Path:
    """Create ``run/token`` with a fresh random token unless one exists; return its path.

    Idempotent: re-running ``init`` keeps the token, so apps that stored it keep working.
    """
    ensure_private_dir(run_dir)
    path = run_dir / TOKEN_FILE
    if not path.exists():
        atomic_write(path, new_token() + "\n")
    return path


def read_token(path: Path) -> str:
    """The token in ``path``; a missing, empty or group/world-readable file (on Windows: one
    whose DACL lets another user read it) is refused."""
    from bastion._text import read_bytes

    # A folder, a FIFO (its open would wait for a writer: `serve --token-file FIFO` hung), a
    # device or an unreadable file is named by read_bytes.
    raw = read_bytes(path, ConfigError, "API token file", missing_ok=True)
    if raw is None:
        raise ConfigError(
            f"no API token at {path}",
            hint="Run `bastion init` to create one, or pass --token-file.",
            path=str(path),
        )
    try:
        text = raw.decode("ascii").strip()
        exposed = _platform.file_exposure(path)  # mode bits on POSIX, the DACL on Windows
    except UnicodeDecodeError:
        raise ConfigError(  # never the bytes themselves: they are (part of) a token
            f"the API token file {path} holds bytes that are not ASCII: a token is 32 or "
            "more characters of base64url text",
            hint=_REWRITE_HINT,
            path=str(path),
        ) from None
    except OSError as err:
        raise ConfigError(
            f"cannot read the API token at {path}: {err.strerror or err}", path=str(path)
        ) from err
    if exposed is not None:
        raise ConfigError(
            f"the API token file {path} is readable by others ({exposed})",
            hint=f"Run `chmod 600 {path}`; consider the token leaked and delete the file to "
            "get a new one at the next `bastion init`.",
            path=str(path),
        )
    if len(text) < 32:
        raise ConfigError(
            f"the API token in {path} is too short ({len(text)} characters; at least 32)",
            hint=_REWRITE_HINT,
            path=str(path),
        )
    return text


_REWRITE_HINT = (
    "Write a new one (`python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > FILE`, "
    "then `chmod 600 FILE`), or, for <home>/run/token, delete it and run `bastion init`."
)


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (``bastion._platform.pid_exists``: signal 0 on
    POSIX; never ``os.kill`` on Windows, where it would terminate the daemon it asks about)."""
    return _platform.pid_exists(pid)


def read_handshake(run_dir: Path) -> Handshake | None:
    """The handshake file's content, or None when there is none or it cannot be parsed.

    Read without blocking and only from a regular file (``_text.read_bytes``): a FIFO left
    at ``run/daemon.json`` made every command that looks for the daemon (`stop`, `doctor`,
    `services list`, the daemon's own shutdown) wait forever for a writer."""
    from bastion._text import read_bytes

    try:
        raw = read_bytes(run_dir / HANDSHAKE_FILE, ConfigError, "handshake", missing_ok=True)
        return None if raw is None else Handshake.from_dict(json.loads(raw))
    except (ConfigError, ValueError, KeyError, TypeError, AttributeError):
        return None


def running_daemon(run_dir: Path) -> Handshake | None:
    """The handshake of the daemon running for this home, or None when none runs.

    The file alone proves nothing: a daemon killed with SIGKILL (or a power cut) leaves it
    behind, its pid may now be another program and its port another program's server. The
    CLI sends the API token to that port, so a handshake counts only while the process it
    names listens on the port it names (a leftover file pointed the token at whatever took
    the port). Read-only: a stale file is left for the next daemon to replace."""
    handshake = read_handshake(run_dir)
    if handshake is None or not pid_alive(handshake.pid):
        return None
    return handshake if listens_on(handshake.pid, handshake.port) else None


def listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a listening TCP socket on ``port`` (psutil: the same
    question on every platform). False when it does not, or when the system will not say (a
    process of another user: this home's daemon runs as this user)."""
    import psutil  # ~40 ms: imported only once a handshake names a live process

    try:
        sockets = psutil.Process(pid).net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return False
    return any(s.status == psutil.CONN_LISTEN and s.laddr and s.laddr.port == port for s in sockets)


def write_handshake(run_dir: Path, handshake: Handshake) -> None:
    """Write ``run/daemon.json`` atomically: a reader sees nothing or the whole JSON."""
    # Atomic: a reader polling for the file sees nothing or the whole JSON, never half of it.
    # Not durable (no fsync, ~2 ms of the daemon's start to its line): the file names a live
    # daemon, and a power cut that could tear it ends the daemon too; a handshake that does
    # not parse is read as "no daemon" (read_handshake).
    atomic_write(run_dir / HANDSHAKE_FILE, handshake.to_json() + "\n", durable=False)


def remove_handshake(run_dir: Path, *, pid: int | None = None) -> None:
    """Remove the handshake; with ``pid``, only if it is that process's own handshake."""
    path = run_dir / HANDSHAKE_FILE
    if pid is not None:
        current = read_handshake(run_dir)
        if current is not None and current.pid != pid:
            return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class DaemonLock:
    """The single-instance lock: ``acquire()`` or :class:`DaemonAlreadyRunning`.

    A :class:`bastion._lockfile.LockFile` on ``run/daemon.lock``, so the kernel's lock
    (``flock``; ``msvcrt.locking`` on Windows) rather than a pid file: it drops with the
    process, so a daemon killed by SIGKILL or a power cut never leaves a lock that blocks the
    next start, and there is no pid-reuse race to get wrong. Being a ``LockFile`` also covers
    a child the holder forks without exec (an app's worker, multiprocessing's "fork"): the
    child closes its copy of the descriptor, which would otherwise keep the lock alive after
    the holder's death, and the next daemon was refused naming a dead pid. The lock file
    stays between holders and is never replaced (an atomic rename would swap the inode and
    silently drop the lock), so it is the one file in run/ not written through
    ``atomic_write``.

    A command that replaces a home's databases (``db restore``, ``db recover``, ``db rekey``)
    holds it too, with ``doing`` naming it: a daemon started meanwhile would open the file
    being replaced and go on writing to the quarantined copy. Its note (pid, command) is
    written into the lock file and emptied at release; the daemon it refuses names it. The
    daemon's own hold leaves the file empty (its handshake says who it is).
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / LOCK_FILE
        self._file = LockFile(self.path, stays=True)
        #: Set when acquiring found a handshake left by a dead daemon (and removed it).
        self.took_over_from: Handshake | None = None

    def acquire(self, *, doing: str | None = None) -> DaemonLock:
        """Take the single-instance lock (``bastion._platform.try_lock`` on ``run/daemon.lock``), else
        ``DaemonAlreadyRunning``. ``doing``: the command holding it instead of a daemon (see
        the class docstring). ``OSError`` when run/ or the file cannot be made or opened."""
        ensure_private_dir(self.run_dir)
        try:
            # Unsigned: a daemon's hold leaves the file empty (a note a killed command left
            # is emptied too, so it never names that command to the next daemon refused).
            self._file.acquire(timeout=0, signed=False)
        except LockTimeout as held:
            note = held.holder
            if note is not None and isinstance(note.get("doing"), str):
                raise DaemonAlreadyRunning(
                    f"`bastion {note['doing']}` (pid {note.get('pid')}) is replacing the "
                    f"databases of {self.run_dir.parent}; the daemon cannot start meanwhile",
                    hint=f"Start it again once `bastion {note['doing']}` has finished.",
                    pid=note.get("pid"),
                    doing=note["doing"],
                ) from None
            running = read_handshake(self.run_dir)
            where = (
                f"pid {running.pid}, port {running.port}"
                if running is not None
                else "starting up, no handshake yet"
            )
            raise DaemonAlreadyRunning(
                f"a bastion daemon is already running for {self.run_dir.parent} ({where})",
                pid=running.pid if running else None,
                port=running.port if running else None,
            ) from None
        if doing is not None:
            try:
                self._file.note({"pid": os.getpid(), "doing": doing})
            except OSError:
                # A full disk: the lock holds all the same; a refused daemon names no one.
                with contextlib.suppress(OSError):
                    self._file.note({"pid": None, "doing": None})  # an empty file
        stale = read_handshake(self.run_dir)
        if stale is not None and stale.pid != os.getpid():
            # We hold the lock, so whoever wrote this handshake is gone: it is stale.
            self.took_over_from = stale
            remove_handshake(self.run_dir)
        return self

    def release(self) -> None:
        """Drop the lock; a command's note goes with it (the file stays, empty)."""
        self._file.release()

    @property
    def held(self) -> bool:
        """Whether this process holds the lock."""
        return self._file.held

    def __enter__(self) -> DaemonLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
