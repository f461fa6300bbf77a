"""An exclusive lock between processes, held on a small file next to what it guards.

:class:`LockFile` is what bastion uses where SQLite's own locks cannot reach: a migration
that runs outside a transaction commits statement by statement, so no SQLite write lock spans
it, yet two processes must never run it at once (see :mod:`bastion.store.migrate.runner`).

* The lock is the kernel's (``bastion._platform``: ``flock`` on POSIX, ``msvcrt.locking`` on
  Windows), so it dies with its holder: a holder killed with ``SIGKILL`` or by the OOM killer
  never leaves a lock that wedges the others, and there is no pid-reuse race to get wrong.
* It belongs to the open descriptor, not the process: two ``LockFile`` objects on one path in
  one process exclude each other too.
* The file also carries a short JSON **note** from the holder (pid, when it took the lock,
  what it is doing). Waiters read it to say whom they wait for; the next holder reads what a
  dead holder left, to learn what it was doing when it died.
* The file exists only while the lock is held (or a holder died, or chose to leave its note):
  a clean release removes it, so a database's directory holds nothing extra between
  migrations and an app that deletes a database's files leaves no stray lock behind. A taker
  checks, once it has the lock, that the path still names the file it locked; if the holder
  it waited for removed it, it starts again on the new file, so two processes never hold
  locks on two different files of one name.

The file is created 0600 and never replaced: an atomic rename would swap the inode under the
lock and silently split it in two, so it is the one kind of file bastion does not write
through ``_fs.atomic_write``. Errors are ``OSError`` (and :class:`LockTimeout`); callers
translate them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from bastion._platform import try_lock, unlock
from bastion.errors import BastionError

__all__ = ["LockFile", "LockTimeout", "cannot_take", "take_now"]

E = TypeVar("E", bound=BastionError)

#: Longest pause between two tries while waiting (a freed lock is noticed within this).
_MAX_POLL_S = 0.05
#: A note longer than this is not one of ours: it is ignored, not parsed.
_MAX_NOTE_BYTES = 64 * 1024


class LockTimeout(TimeoutError):
    """The lock stayed taken past the timeout; ``holder`` is the holder's note, if any."""

    def __init__(self, path: Path, waited_s: float, holder: dict[str, Any] | None) -> None:
        note = holder or {}
        #: The holder's pid, when its note says.
        self.pid: int | None = note.get("pid")
        #: How a message names the holder: "process 123", or "another process".
        self.who = f"process {self.pid}" if self.pid else "another process"
        #: " since <when it took the lock>", or "" when its note does not say.
        self.since = f" since {note['acquired_at']}" if note.get("acquired_at") else ""
        super().__init__(f"{path} is held by {self.who} (waited {waited_s:.1f}s)")
        self.path = path
        self.waited_s = waited_s
        self.holder = holder


def cannot_take(error: type[E], path: Path, what: str, err: OSError) -> E:
    """``error`` for the ``what`` lock file at ``path`` that the disk refused (read-only or
    full, a folder not ours): what every holder of a lock beside a database raises."""
    return error(
        f"cannot take the {what} lock {path}: {err.strerror or err}",
        hint=f"Make {path.parent} writable by this user (it holds the database).",
        path=str(path),
    )


def take_now(
    path: Path,
    what: str,
    busy: Callable[[LockTimeout], BastionError],
    unwritable: type[BastionError],
) -> LockFile:
    """The lock at ``path`` taken without waiting, for a role one process holds at a time
    (supervising a home, archiving a database): ``busy(held)`` raised while another holder
    has it, :func:`cannot_take` with ``unwritable`` when the disk refuses the file."""
    file = LockFile(path)
    try:
        file.acquire(timeout=0)
    except LockTimeout as err:
        raise busy(err) from err
    except OSError as err:
        raise cannot_take(unwritable, file.path, what, err) from err
    return file


class LockFile:
    """``acquire()`` / ``release()`` (or ``with``) an exclusive lock on ``path``.

    Not reentrant, and one object is for one thread at a time: take it, do the guarded work,
    release it.
    """

    def __init__(self, path: str | os.PathLike[str], *, stays: bool = False) -> None:
        """``stays``: the file is never removed, a release empties it instead (a lock file
        others know by name, such as the daemon's ``run/daemon.lock``)."""
        self.path = Path(path)
        self.stays = stays
        self._fd: int | None = None
        self._note: dict[str, Any] = {}

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(
        self,
        *,
        timeout: float | None = None,
        on_wait: Callable[[dict[str, Any] | None], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        signed: bool = True,
    ) -> dict[str, Any] | None:
        """Take the lock, waiting up to ``timeout`` seconds (None: as long as it takes).

        ``on_wait(holder_note)`` is called once, when the lock is found taken. Returns the
        note the previous holder left behind: None after a clean release, else what a holder
        that died while holding it was doing. Raises :class:`LockTimeout`, or ``OSError``
        when the file cannot be created or opened (a read-only or full disk, a bad mode).

        ``signed=False`` leaves the file empty instead of writing the holder's pid and time
        (a holder that says who it is elsewhere: the daemon's handshake); :meth:`note` still
        writes what it is given.
        """
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is held by this LockFile already")
        started = clock()
        pause = 0.001
        waited = False
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # non-inheritable (PEP 446)
            try:
                while not try_lock(fd):
                    if not waited:
                        waited = True
                        if on_wait is not None:
                            on_wait(_read_note(fd))
                    if timeout is not None and clock() - started >= timeout:
                        raise LockTimeout(self.path, clock() - started, _read_note(fd))
                    time.sleep(pause)
                    pause = min(pause * 2, _MAX_POLL_S)
                if not _is_current(fd, self.path):
                    # The holder we waited for removed the file on its way out: this lock
                    # is on a name nobody else can open any more. Take the new file's.
                    os.close(fd)
                    continue
                previous = _read_note(fd)
            except BaseException:
                os.close(fd)  # closing the descriptor drops the lock if it was taken
                raise
            self._fd = fd
            _HELD.add(self)
            break
        self._note = (
            {
                "pid": os.getpid(),
                "acquired_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            if signed
            else {}  # written as an empty file: a dead holder's note does not stay behind
        )
        try:
            self._write(self._note, durable=False)
        except OSError:
            # A full disk refuses the note: drop the lock with the descriptor rather than
            # return an error while still holding it (nothing would ever release it, and
            # every other taker would wait on a process that gave up).
            self._fd = None
            _HELD.discard(self)
            os.close(fd)
            raise
        return previous

    def note(self, fields: Mapping[str, Any], *, durable: bool = False) -> None:
        """Add ``fields`` to the holder's note (a field set to None is removed).

        ``durable`` fsyncs it: for a note the next holder must see even after a power cut
        (what this holder is about to change outside a transaction).
        """
        if self._fd is None:
            raise RuntimeError(f"{self.path} is not held")
        for key, value in fields.items():
            if value is None:
                self._note.pop(key, None)
            else:
                self._note[key] = value
        self._write(self._note, durable=durable)

    def read_note(self) -> dict[str, Any] | None:
        """The current holder's note (read without taking the lock), or None."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            return _read_note(fd)
        finally:
            os.close(fd)

    def release(self, *, keep_note: bool = False) -> None:
        """Drop the lock (a no-op when not held) and remove the file, unless ``keep_note``:
        then the file and its note stay, and the next holder receives the note from
        :meth:`acquire` as if this holder had died.

        The file goes while the lock is still held; a process that was waiting on it notices
        (its descriptor no longer names the path) and takes the lock on a new file instead.
        """
        fd, self._fd = self._fd, None
        _HELD.discard(self)
        if fd is None:
            return
        try:
            if not keep_note:
                # Where the file cannot go (Windows, while another process has it open), or
                # must not (``stays``), it stays, emptied: an empty note reads as a clean
                # release.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                if not self.stays:
                    with contextlib.suppress(OSError):
                        self.path.unlink()
            with contextlib.suppress(OSError):  # the lock goes with the descriptor anyway
                unlock(fd)
        finally:
            os.close(fd)

    def _write(self, note: dict[str, Any], *, durable: bool) -> None:
        assert self._fd is not None
        data = json.dumps(note, sort_keys=True).encode("utf-8") if note else b""
        # Truncate first: a shorter note must not keep the tail of a longer one. A holder
        # killed between the two leaves an empty or partial note, which reads as none.
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.write(self._fd, data)
        if durable:
            os.fsync(self._fd)

    def __enter__(self) -> LockFile:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<LockFile {self.path}{' held' if self.held else ''}>"


def _is_current(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file ``fd`` has open."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _read_note(fd: int) -> dict[str, Any] | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, _MAX_NOTE_BYTES + 1)
    except OSError:
        return None
    if not data or len(data) > _MAX_NOTE_BYTES:
        return None
    try:
        note = json.loads(data)
    except ValueError:  # torn by a holder killed mid-write
        return None
    return note if isinstance(note, dict) else None


#: The locks this process holds, for the fork handler below.
_HELD: weakref.WeakSet[LockFile] = weakref.WeakSet()


def _forget_held_in_child() -> None:
    # A child forked without exec (multiprocessing's default "fork" start on Linux, an app's
    # os.fork) shares each held lock's open file description, and a flock lives as long as
    # any descriptor of it: the lock outlived a holder killed with SIGKILL for as long as its
    # workers lived, and the next holder was refused naming a dead pid. The child closes its
    # copies and forgets them (closing never unlocks the parent's; a release here would have:
    # unlock acts on the shared description). Exec'd children never had them (O_CLOEXEC).
    for file in list(_HELD):
        fd, file._fd = file._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
    _HELD.clear()


if sys.platform != "win32":  # Windows has no fork
    os.register_at_fork(after_in_child=_forget_held_in_child)
