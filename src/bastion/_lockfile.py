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
  dead holder left, to learn what it was doing when it died. A clean release empties it.

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
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bastion._platform import try_lock, unlock

__all__ = ["LockFile", "LockTimeout"]

#: Longest pause between two tries while waiting (a freed lock is noticed within this).
_MAX_POLL_S = 0.05
#: A note longer than this is not one of ours: it is ignored, not parsed.
_MAX_NOTE_BYTES = 64 * 1024


class LockTimeout(TimeoutError):
    """The lock stayed taken past the timeout; ``holder`` is the holder's note, if any."""

    def __init__(self, path: Path, waited_s: float, holder: dict[str, Any] | None) -> None:
        who = f"pid {holder.get('pid')}" if holder else "another process"
        super().__init__(f"{path} is held by {who} (waited {waited_s:.1f}s)")
        self.path = path
        self.waited_s = waited_s
        self.holder = holder


class LockFile:
    """``acquire()`` / ``release()`` (or ``with``) an exclusive lock on ``path``.

    Not reentrant, and one object is for one thread at a time: take it, do the guarded work,
    release it.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
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
    ) -> dict[str, Any] | None:
        """Take the lock, waiting up to ``timeout`` seconds (None: as long as it takes).

        ``on_wait(holder_note)`` is called once, when the lock is found taken. Returns the
        note the previous holder left behind: None after a clean release, else what a holder
        that died while holding it was doing. Raises :class:`LockTimeout`, or ``OSError``
        when the file cannot be created or opened (a read-only or full disk, a bad mode).
        """
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is held by this LockFile already")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # non-inheritable (PEP 446)
        try:
            started = clock()
            pause = 0.001
            waited = False
            while not try_lock(fd):
                if not waited:
                    waited = True
                    if on_wait is not None:
                        on_wait(_read_note(fd))
                if timeout is not None and clock() - started >= timeout:
                    raise LockTimeout(self.path, clock() - started, _read_note(fd))
                time.sleep(pause)
                pause = min(pause * 2, _MAX_POLL_S)
            previous = _read_note(fd)
            self._fd = fd
        except BaseException:
            os.close(fd)  # closing the descriptor drops the lock if it was taken
            raise
        self._note = {
            "pid": os.getpid(),
            "acquired_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        self._write(self._note, durable=False)
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
        """Drop the lock (a no-op when not held). The note is emptied, unless ``keep_note``:
        then the next holder receives it from :meth:`acquire` as if this holder had died."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if not keep_note:
                with contextlib.suppress(OSError):  # the lock goes with the descriptor anyway
                    os.ftruncate(fd, 0)
            with contextlib.suppress(OSError):
                unlock(fd)
        finally:
            os.close(fd)

    def _write(self, note: dict[str, Any], *, durable: bool) -> None:
        assert self._fd is not None
        data = json.dumps(note, sort_keys=True).encode("utf-8")
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
