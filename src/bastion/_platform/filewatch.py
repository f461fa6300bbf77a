"""Waiting, on an event loop, for a few files of one directory to change.

The daemon follows ``vault.db`` this way: a secret set by another process (the CLI, an app
using the library) commits to the same SQLite file, and the services using that secret must
learn of it within a second. Two ways, picked by what the system offers:

- **inotify** (Linux, through ``inotify_simple``): one watch on the *directory*, so a file
  that is created, replaced by a rename or deleted (SQLite's ``-wal`` comes and goes with
  its last connection; a restore renames a new ``vault.db`` in) is seen as well as a write.
  The descriptor is read by the event loop (``add_reader``): nothing runs until the kernel
  has an event, so an idle daemon never wakes for it. Events for other names in the
  directory (``bastion.db-wal`` on every log batch) are read and dropped.
- **polling** elsewhere, or when inotify cannot be had (no instance left: ``EMFILE``): a
  ``stat`` of each file every ``poll_s`` (size, mtime, inode). A WAL commit appends to the
  ``-wal`` file, so every commit changes its size or its mtime.

A thread that waits for changes (the WAL archiver) uses :class:`BlockingWatch`: the same
inotify watch, waited for with ``select`` beside a pipe that :meth:`BlockingWatch.interrupt`
writes to, so the thread sleeps until a file changes, someone interrupts it, or its own
timeout passes. It exists only where inotify does (:func:`blocking_watch` returns None
elsewhere: the caller keeps its polling loop).

Either way :meth:`FileWatch.changed` may return when nothing that matters changed (a
checkpoint rewrites the database; a read does not): callers re-read what they care about
and compare, they never act on the wake-up alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "BlockingWatch",
    "FileWatch",
    "PollingWatch",
    "blocking_watch",
    "directory_watch",
    "watch_files",
]

#: Seconds between two looks when polling.
POLL_S = 0.5


class FileWatch(Protocol):
    """Changes of some files of one directory, as awaitable wake-ups."""

    #: "inotify" or "poll": how changes are noticed (for diagnostics).
    how: str

    async def changed(self) -> None:
        """Return once a watched file has changed since the previous return (or since the
        watch was made, for the first call)."""

    def close(self) -> None:
        """Stop watching; idempotent."""


def _inotify() -> Any:
    """``inotify_simple``, with the C library it calls into already given.

    inotify_simple finds libc on its first instance with ``ctypes.util.find_library("c")``,
    which on Linux runs ``ldconfig -p`` as a child process (a fork of the whole daemon and
    an exec, a few milliseconds on the main thread of ``bastion serve``'s start: issue 22
    §7). Every symbol it calls (``inotify_init1``, ``inotify_add_watch``,
    ``inotify_rm_watch``) is libc's, and libc is already loaded in every Python process, so
    the process's own symbol table (``dlopen(NULL)``, ``CDLL(None)``) resolves them
    without a search. Set only when inotify_simple has none yet (it keeps the first)."""
    import ctypes

    import inotify_simple

    if getattr(inotify_simple, "_libc", None) is None:
        inotify_simple._libc = ctypes.CDLL(None, use_errno=True)
    return inotify_simple


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None  # absent (a -wal between connections) is a state like any other
    return (st.st_size, st.st_mtime_ns, st.st_ino)


class PollingWatch:
    """``stat`` of each file every ``poll_s``: the portable fallback."""

    how = "poll"

    def __init__(self, directory: Path, names: Iterable[str], poll_s: float = POLL_S) -> None:
        self._paths = [directory / name for name in names]
        self._poll_s = poll_s
        self._seen = self._look()

    def _look(self) -> tuple[tuple[int, int, int] | None, ...]:
        return tuple(_signature(p) for p in self._paths)

    async def changed(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            now = self._look()
            if now != self._seen:
                self._seen = now
                return

    def close(self) -> None:
        pass


class _InotifyWatch:
    """One inotify watch on the directory, read by the event loop when the kernel has news."""

    how = "inotify"

    def __init__(self, directory: Path, names: Iterable[str] | None, poll_s: float) -> None:
        inotify_simple = _inotify()
        self._flags = inotify_simple.flags
        self._directory = directory
        #: None: every name in the directory counts (``directory_watch``).
        self._names = (
            None
            if names is None
            else {os.fsencode(n).decode("utf-8", "surrogateescape") for n in names}
        )
        self._poll_s = poll_s
        self._inotify: Any = inotify_simple.INotify(nonblocking=True)
        f = self._flags
        mask = f.MODIFY | f.CLOSE_WRITE | f.CREATE | f.DELETE | f.MOVED_TO | f.MOVED_FROM
        mask |= f.DELETE_SELF | f.MOVE_SELF
        try:
            self._inotify.add_watch(directory, mask)
        except OSError:
            self._inotify.close()
            raise
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: The directory itself went away (or was moved): the watch sees nothing any more.
        self._lost = False
        self._fallback: PollingWatch | None = None
        self._closed = False

    def _on_readable(self) -> None:
        try:
            events = self._inotify.read(timeout=0)
        except (BlockingIOError, OSError):
            return
        f = self._flags
        hit = False
        for event in events:
            if event.mask & (f.DELETE_SELF | f.MOVE_SELF | f.IGNORED):
                self._lost = True
                hit = True
            elif event.mask & f.Q_OVERFLOW or self._names is None or event.name in self._names:
                hit = True  # an overflow may have hidden ours: look again to be sure
        if hit and self._event is not None:
            self._event.set()

    async def changed(self) -> None:
        if self._closed:
            raise RuntimeError("the watch is closed")
        if self._fallback is not None:
            await self._fallback.changed()
            return
        if self._event is None:
            self._loop = asyncio.get_running_loop()
            self._event = asyncio.Event()
            self._loop.add_reader(self._inotify.fileno(), self._on_readable)
        await self._event.wait()
        self._event.clear()
        if self._lost and self._names is not None:
            # The directory was removed or moved: nothing more will come from this watch.
            self._stop_reading()
            self._fallback = PollingWatch(self._directory, self._names, self._poll_s)

    @property
    def lost(self) -> bool:
        """The directory was removed or moved: this watch will see nothing more of it."""
        return self._lost

    def _stop_reading(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._inotify.fileno())
        self._loop = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_reading()
        self._inotify.close()


def directory_watch(directory: Path) -> _InotifyWatch | None:
    """An inotify watch of every name in ``directory`` (the services folder), read by the
    event loop: an idle daemon never wakes for it. None where inotify does not exist (the
    caller uses its portable watcher); ``OSError`` where it exists but none can be had now
    (EMFILE, ENOSPC: the caller polls, and says so). After the directory is removed or
    moved, :attr:`_InotifyWatch.lost` is true and :meth:`changed` returns once: the caller
    watches again when the directory is back."""
    try:
        return _InotifyWatch(directory, None, POLL_S)
    except (ImportError, AttributeError):
        return None


def watch_files(directory: Path, names: Iterable[str], *, poll_s: float = POLL_S) -> FileWatch:
    """Watch ``names`` in ``directory``: with inotify where the system has it, else by
    polling every ``poll_s`` (see the module docstring)."""
    names = list(names)
    try:
        return _InotifyWatch(directory, names, poll_s)
    except (ImportError, OSError, AttributeError):
        # No inotify here (not Linux: the package is not installed), or none to be had now
        # (EMFILE, ENOSPC: the user's inotify limits are spent): polling still works.
        return PollingWatch(directory, names, poll_s)


class BlockingWatch:
    """An inotify watch on a directory for a thread: :meth:`wait` blocks (releasing the
    GIL, in ``select``) until a watched name changes -- or, with ``opens``, is opened or
    closed --, :meth:`interrupt` is called, or the timeout passes."""

    how = "inotify"

    def __init__(self, directory: Path, names: Iterable[str], *, opens: bool = False) -> None:
        inotify_simple = _inotify()
        self._flags = inotify_simple.flags
        self._names = {os.fsencode(n).decode("utf-8", "surrogateescape") for n in names}
        self._inotify: Any = inotify_simple.INotify(nonblocking=True)
        f = self._flags
        mask = f.MODIFY | f.CLOSE_WRITE | f.CREATE | f.DELETE | f.MOVED_TO | f.MOVED_FROM
        mask |= f.DELETE_SELF | f.MOVE_SELF
        if opens:
            mask |= f.OPEN | f.CLOSE_NOWRITE
        try:
            self._inotify.add_watch(directory, mask)
        except OSError:
            self._inotify.close()
            raise
        # The interrupt: a byte on a socket pair (non-blocking on every system; a pipe's
        # blocking flag cannot be set on Windows, where mypy checks this module too).
        self._rsock, self._wsock = socket.socketpair()
        self._rsock.setblocking(False)
        self._wsock.setblocking(False)
        self._rfd = self._rsock.fileno()
        #: The directory went away or moved: no event will come any more (poll instead).
        self.lost = False
        self._closed = False
        self._closing = threading.Lock()  # interrupt() from other threads vs close()

    def wait(self, timeout: float | None) -> bool:
        """Block until an event for a watched name, an :meth:`interrupt`, or ``timeout``
        seconds (None: no timeout). True when woken by an event or an interrupt."""
        if self._closed:
            raise RuntimeError("the watch is closed")
        fd = self._inotify.fileno()
        try:
            ready, _, _ = select.select([fd, self._rfd], [], [], timeout)
        except InterruptedError:
            return True
        hit = False
        if self._rfd in ready:
            with contextlib.suppress(BlockingIOError, OSError):
                while self._rsock.recv(512):
                    pass
            hit = True
        if fd in ready:
            try:
                events = self._inotify.read(timeout=0)
            except (BlockingIOError, OSError):
                events = []
            f = self._flags
            for event in events:
                if event.mask & (f.DELETE_SELF | f.MOVE_SELF | f.IGNORED):
                    self.lost = hit = True
                elif event.mask & f.Q_OVERFLOW or event.name in self._names:
                    hit = True  # an overflow may have hidden ours: look again to be sure
        return hit

    def interrupt(self) -> None:
        """Wake the thread in :meth:`wait` (or make its next call return at once)."""
        with self._closing:
            if self._closed:
                return  # never write to a closed descriptor's number: it may be reused
            with contextlib.suppress(BlockingIOError, OSError):
                self._wsock.send(b"\0")

    def close(self) -> None:
        """Stop watching; idempotent. Not while another thread is in :meth:`wait`."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
        self._inotify.close()
        for sock in (self._rsock, self._wsock):
            with contextlib.suppress(OSError):
                sock.close()


def blocking_watch(
    directory: Path, names: Iterable[str], *, opens: bool = False
) -> BlockingWatch | None:
    """A :class:`BlockingWatch` of ``names`` in ``directory``, or None where inotify cannot
    be had (not Linux, or the user's inotify limits are spent): the caller then polls."""
    try:
        return BlockingWatch(directory, list(names), opens=opens)
    except (ImportError, OSError, AttributeError):
        return None
