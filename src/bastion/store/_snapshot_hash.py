"""Hashing a backup's file on a worker thread: after the copy, or following it as it is written.

A backup's manifest records the SHA-256 of its file. :class:`FollowingSha256` hashes the file
copy's ranges as they land (no pass of its own afterwards); :class:`Sha256Thread` hashes a
finished file (after the backup API or ``VACUUM INTO``). Both run on a thread whose CPU
priority is lowered, which ``inspect_file``'s quick check shares
(:func:`_yield_cpu_to_the_application`). Separate from the copy itself
(``_snapshot_copy.py``, ``_snapshot_file_copy.py``): the threads and their hand-over of
errors are one concern of their own, whichever way the copy was made.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from pathlib import Path

from bastion import _platform
from bastion.errors import BackupError

__all__ = ["FollowingSha256", "Sha256Thread"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _yield_cpu_to_the_application() -> None:
    """Lower the calling worker thread's CPU priority, so that hashing and checking a backup
    never delay the application's own threads, its writer above all, on a busy machine
    (``bastion._platform.lower_thread_priority``: nice +10 for the thread on Linux, below
    normal on Windows; nothing where only the whole process could be reniced)."""
    _platform.lower_thread_priority()


class Sha256Thread:
    """SHA-256 of a file computed on a worker thread; ``result()`` joins and returns it."""

    def __init__(self, path: Path) -> None:
        self._digest = ""
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(path,), name="bastion-sha256")
        self._thread.start()

    def _run(self, path: Path) -> None:
        _yield_cpu_to_the_application()
        try:
            self._digest = _sha256(path)
        except BaseException as err:  # re-raised in the caller's thread by result()
            self._error = err

    def result(self, expected_bytes: int | None = None) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._digest

    def abandon(self) -> None:
        self._thread.join()


class FollowingSha256:
    """SHA-256 of a file *while it is being written*: the writer announces each finished range
    (in file order, from offset 0, without gaps) and a worker thread reads it back and hashes
    it, so the hash is of the bytes in the file and costs no pass of its own afterwards.

    hashlib and ``pread`` release the GIL: the hashing runs on the second core while the
    copy and then ``quick_check`` run on the first. Needs positional reads
    (``bastion._platform.FILE_COPY``), as the file copy it follows does.
    """

    def __init__(self, path: Path) -> None:
        if _platform.pread is None:
            raise RuntimeError("FollowingSha256 needs positional reads (os.pread)")
        self._pread = _platform.pread
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self._ranges: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
        self._digest = hashlib.sha256()
        self._hashed = 0
        self._error: BaseException | None = None
        self._stop = threading.Event()
        # A daemon thread: it waits for ranges until told the copy ended (result/abandon). A
        # caller interrupted between the two (Ctrl-C, SIGTERM raised as an exception at any
        # line of the CLI's main thread) left it waiting, and the interpreter's exit waited
        # for it forever: `db backup` stopped by SIGTERM hung after "stopped by SIGTERM".
        self._thread = threading.Thread(target=self._run, name="bastion-sha256", daemon=True)
        self._thread.start()

    def add(self, offset: int, length: int) -> None:
        self._ranges.put((offset, length))

    def _run(self) -> None:
        _yield_cpu_to_the_application()
        try:
            while (item := self._ranges.get()) is not None and not self._stop.is_set():
                offset, end = item[0], item[0] + item[1]
                if offset != self._hashed:
                    raise RuntimeError(f"hash ranges out of order: {offset} after {self._hashed}")
                while offset < end:
                    chunk = self._pread(self._fd, min(1024 * 1024, end - offset), offset)
                    if not chunk:
                        raise OSError(f"backup file ended at {offset} while hashing")
                    self._digest.update(chunk)
                    offset += len(chunk)
                self._hashed = end
        except BaseException as err:  # re-raised in the caller's thread by result()
            self._error = err
        finally:
            os.close(self._fd)

    def result(self, expected_bytes: int) -> str:
        self._ranges.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._hashed != expected_bytes:
            raise BackupError(f"hashed {self._hashed} bytes of a {expected_bytes}-byte backup")
        return self._digest.hexdigest()

    def abandon(self) -> None:
        self._stop.set()
        self._ranges.put(None)
        self._thread.join()
