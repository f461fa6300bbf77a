"""The process's standard streams as a hostile environment leaves them, made safe at the
edge (:func:`bastion.cli.main`) for every command.

- A **closed** descriptor 0, 1 or 2 (`bastion ... >&-`, a launcher that closes them) is
  opened on the null device before anything else, so no file bastion opens later (a
  database, a lock) takes its number, where anything writing to "stdout" would write into
  it. Python had left ``sys.stdout`` (or ``stdin``, ``stderr``) None: a table's ``isatty()``
  and ``secrets set``'s read of stdin were ``AttributeError`` tracebacks, and with stderr
  closed the daemon printed its one-time dashboard sign-in link on stdout, the channel its
  parent reads the handshake from.
- **stdin** closed reads as empty (``secrets set`` says the value is empty and stores
  nothing).
- **stdout**: a write the system refuses (closed, a full disk, an I/O error) raises
  :class:`OutputFailed`, which the edge reports as :class:`bastion.errors.OutputUnwritable`
  (exit 71) instead of an ``OSError`` traceback, or, closed, instead of printing nothing and
  exiting 0. A pipe whose reader left (``bastion logs | head -1``) raises
  :class:`ReaderGone`, which the edge ends with status 0 and no message, as ripgrep does:
  the reader took what it wanted, and under ``set -o pipefail`` a script must not fail
  because ``head`` stopped early. After a refusal the rest is dropped, so the
  interpreter's last flush adds no noise.
- **stderr**: a refused write is dropped: there is nowhere left to say it, and the exit
  status still tells (a daemon whose parent stopped reading its log keeps running).
- Characters the locale's encoding cannot show (a latin-1 locale printing a name in
  Japanese) are written as backslash escapes (``\\u540d``) instead of a
  ``UnicodeEncodeError`` traceback.

Streams a caller replaced (pytest's capture, click's ``CliRunner``) are left alone.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
from collections.abc import Iterator
from typing import TextIO

__all__ = ["OutputFailed", "ReaderGone", "standard_streams"]


class OutputFailed(OSError):
    """Standard output refused a write (closed, full, failing); not a closed pipe."""


class ReaderGone(BrokenPipeError):
    """Standard output is a pipe whose reader went away: the command stops, quietly.

    Still a ``BrokenPipeError`` (``bastion serve`` goes on serving when its parent stops
    reading the handshake), but without the ``EPIPE`` errno: click's own handler of an
    ``EPIPE`` ends the command with status 1, so this one passes it by and reaches
    :func:`bastion.cli.main`, which exits 0."""

    def __init__(self) -> None:
        super().__init__(None, "the reader of standard output went away")


class _Stdout(io.RawIOBase):
    """Descriptor 1 as a raw stream whose refused writes are :class:`OutputFailed`."""

    def __init__(self, fd: int, *, closed: bool) -> None:
        super().__init__()
        self._fd = fd
        self._closed_at_start = closed
        self.failed = False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return not self._closed_at_start and os.isatty(self._fd)

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self.failed:
            return len(data)  # dropped: the first refusal is what the edge reports
        try:
            if self._closed_at_start:
                raise OSError(errno.EBADF, "standard output is closed")
            return os.write(self._fd, data)
        except BrokenPipeError as err:
            self.failed = True
            raise ReaderGone from err
        except OSError as err:
            self.failed = True
            raise OutputFailed(err.errno, err.strerror) from err


class _Stderr(io.RawIOBase):
    """Descriptor 2 as a raw stream that drops what the system refuses."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            return os.write(self._fd, data)
        except OSError:
            return len(data)  # nowhere left to say anything


def _reopen_closed(fd: int) -> bool:
    """Open the null device on ``fd`` if it is closed; True if it was."""
    try:
        os.fstat(fd)
    except OSError:
        pass
    else:
        return False
    null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
    if null != fd:  # a lower descriptor was closed too and took it: move it where it belongs
        os.dup2(null, fd)
        os.close(null)
    return True


def _text(raw: io.RawIOBase, like: TextIO | None) -> io.TextIOWrapper:
    encoding = getattr(like, "encoding", None) or "utf-8"
    errors = getattr(like, "errors", None) or "strict"
    return io.TextIOWrapper(
        io.BufferedWriter(raw),
        encoding=encoding,
        # "strict" would make a character the locale cannot encode a traceback; the
        # surrogateescape of a C locale stays (it writes undecodable bytes back as they were).
        errors="backslashreplace" if errors == "strict" else errors,
        line_buffering=bool(getattr(like, "line_buffering", False)) or raw.isatty(),
        write_through=bool(getattr(like, "write_through", False)),
    )


@contextlib.contextmanager
def standard_streams() -> Iterator[None]:
    """Make the interpreter's own standard streams safe (see the module docstring) for the
    duration; streams someone else installed are left as they are."""
    saved = (sys.stdin, sys.stdout, sys.stderr)
    closed = {fd: _reopen_closed(fd) for fd in (0, 1, 2)}
    if sys.stdin is None and sys.__stdin__ is None:
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
    if sys.stdout is sys.__stdout__ and _on_fd(sys.stdout, 1):
        sys.stdout = _text(_Stdout(1, closed=sys.stdout is None or closed[1]), sys.stdout)
    if sys.stderr is sys.__stderr__ and _on_fd(sys.stderr, 2):
        sys.stderr = _text(_Stderr(2), sys.stderr)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        sys.stdin, sys.stdout, sys.stderr = saved


def _on_fd(stream: TextIO | None, fd: int) -> bool:
    """``stream`` is None (its descriptor was closed at start) or a plain file stream on
    ``fd`` (not a Windows console, whose own stream writes Unicode to it)."""
    if stream is None:
        return True
    buffer = getattr(stream, "buffer", None)
    raw = getattr(buffer, "raw", buffer)  # unbuffered (python -u): the buffer is the file
    try:
        return isinstance(raw, io.FileIO) and raw.fileno() == fd
    except (OSError, ValueError):
        return False
