"""Capture of a child's stdout/stderr: chunked pipe reads -> lines -> redaction -> batches.

Why this shape (``bench/logs.py`` measures it): the event loop only *reads* — 64 KiB chunks
off each pipe, counted (``bytes.count``, C speed) and queued — so a child writing as fast as
it can runs as fast as under a parent that discards its output. Splitting into lines,
redaction and decoding happen off the loop, in a worker thread, once per batch; storage gets
one batched insert per ``batch_lines`` lines, or ``batch_ms`` after the first line of a batch
was read, whichever comes first. A silent child costs nothing: the flusher sleeps until a
chunk is queued (no timer runs while there is nothing to store; a desktop daemon with ten
quiet services must not wake twenty times a second for them, ``bench/idle.py``).

The queue is bounded in lines (``buffer_lines``). When storage is slower than the child for
longer than that buffer lasts, whole chunks are dropped, counted, and a
``[bastion] N lines dropped`` line is stored where they were: a gap is never silent, and
the reader never waits for storage.

Each stream is redacted as a stream (bytes, before it is split into lines or decoded) by a
:class:`~bastion.supervisor.redact.RedactingStream` of the child's :class:`Redactor`: a secret
cut across two writes, or across a newline, is still found, and only what could still become
a secret is held back. A line longer than ``line_max_bytes`` is then split, never inside a
``[REDACTED:name]`` marker nor inside a UTF-8 character; invalid UTF-8 becomes U+FFFD.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import NamedTuple

from bastion.supervisor._aio import within
from bastion.supervisor.redact import MARKER_PREFIX, Redactor

__all__ = ["CapturedLine", "LineSplitter", "LogCapture", "Sink"]

#: Read size; as large as the pipe the child writes into (process.PIPE_SIZE).
CHUNK = 1 << 20


class CapturedLine(NamedTuple):
    """One captured line: when, which stream, its level and the (redacted) message."""

    ts: float
    stream: str
    level: str
    message: str


#: Stores one batch (in order). Called on the event loop; do the blocking part in a thread.
Sink = Callable[[list[CapturedLine]], Awaitable[None]]


class _Chunk(NamedTuple):
    ts: float
    stream: str
    data: bytes
    #: > 0: the chunk was dropped; ``data`` is then only its tail after the last newline.
    dropped: int
    #: For a dropped chunk: the bytes just before ``data`` (at most what the redactor may
    #: hold back), so a secret cut by the gap is still recognised. Never stored.
    context: bytes = b""


class LineSplitter:
    """Turns a stream's chunks into redacted, decoded, length-bounded lines (thread-safe per
    stream: each stream has its own redacting stream and pending partial line)."""

    def __init__(self, redactor: Redactor, level: str, line_max_bytes: int) -> None:
        self._redact = redactor.stream()
        self._marker_max = redactor.marker_max
        self._level = level
        self._max = line_max_bytes
        self._pending = b""

    def _cut(self, data: bytes) -> int:
        """Where to split an over-long line: at the limit, but not in a marker or a character."""
        cut = self._max
        # The data is redacted already; a marker cut in two would read as garbage.
        opened = data.rfind(MARKER_PREFIX, max(0, cut - self._marker_max), cut)
        if opened >= 0:
            closed = data.find(b"]", opened, opened + self._marker_max)
            if closed >= cut:
                cut = opened if opened > 0 else closed + 1
        # Back up to the first byte of a UTF-8 sequence (continuation bytes are 10xxxxxx).
        back = 0
        while back < 3 and 0 < cut - back < len(data) and (data[cut - back] & 0xC0) == 0x80:
            back += 1
        if back < 3 and cut - back > 0:
            cut -= back
        return cut

    def _line(self, ts: float, stream: str, raw: bytes, out: list[CapturedLine]) -> None:
        while len(raw) > self._max:
            cut = self._cut(raw)
            self._line(ts, stream, raw[:cut], out)
            raw = raw[cut:]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        out.append(CapturedLine(ts, stream, self._level, raw.decode("utf-8", "replace")))

    def _lines(self, ts: float, stream: str, data: bytes, out: list[CapturedLine]) -> None:
        data = self._pending + data if self._pending else data
        lines = data.split(b"\n")
        self._pending = lines.pop()
        for raw in lines:
            self._line(ts, stream, raw, out)
        while len(self._pending) > self._max:  # bound what waits for its newline, too
            cut = self._cut(self._pending)
            self._line(ts, stream, self._pending[:cut], out)
            self._pending = self._pending[cut:]

    def use(self, redactor: Redactor) -> None:
        """Redact with ``redactor`` from now on (what is held back is carried over)."""
        self._redact = self._redact.handover(redactor)
        self._marker_max = max(self._marker_max, redactor.marker_max)

    def feed(self, chunk: _Chunk, out: list[CapturedLine]) -> None:
        """Redact ``chunk``, split it into lines and append them to ``out`` (a partial line,
        and a tail that may start a secret, wait)."""
        if chunk.dropped:
            # The pending partial line was the start of the first dropped line. The tail
            # after the gap starts a new line; the redactor looks at the context before it.
            self._pending = b""
            self._redact.restart(chunk.context)
            out.append(
                CapturedLine(
                    chunk.ts,
                    chunk.stream,
                    "warning",
                    f"[bastion] {chunk.dropped} lines dropped (log buffer full)",
                )
            )
        self._lines(chunk.ts, chunk.stream, self._redact.feed(chunk.data), out)

    def finish(self, ts: float, stream: str, out: list[CapturedLine]) -> None:
        """Flush what the redactor held and the last partial line at end of stream."""
        self._lines(ts, stream, self._redact.finish(), out)
        if self._pending:
            self._line(ts, stream, self._pending, out)
            self._pending = b""


class LogCapture:
    """Reads a child's pipes and hands ordered, redacted batches to ``sink``.

    ``attach`` a reader per stream, then ``await close()`` after the child exited: it waits
    for the pipes to reach EOF and flushes what is left.
    """

    def __init__(
        self,
        sink: Sink,
        redactor: Redactor,
        *,
        levels: Mapping[str, str] | None = None,
        batch_lines: int = 1000,
        batch_ms: int = 50,
        buffer_lines: int = 100_000,
        line_max_bytes: int = 16 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sink = sink
        self._redactor = redactor
        self._levels = dict(levels or {"stdout": "info", "stderr": "warning"})
        self._batch_lines = batch_lines
        self._batch_s = batch_ms / 1000
        self._cap = buffer_lines
        self._max = line_max_bytes
        self._clock = clock
        self._queue: list[_Chunk] = []
        self._queued_lines = 0
        self._splitters: dict[str, LineSplitter] = {}
        #: Set when a chunk is queued (or on close): the flusher sleeps on it, untimed.
        self._data = asyncio.Event()
        #: Set when a batch is full (``batch_lines``), a chunk was dropped, or on close: the
        #: flusher stops waiting for the batch to fill.
        self._wake = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closing = False
        #: A redactor to switch to before the next batch is processed (use_redactor).
        self._next_redactor: Redactor | None = None
        #: Lines read (newlines seen), handed to the sink, dropped (buffer full or sink failed).
        self.read = 0
        self.stored = 0
        self.dropped = 0
        self.sink_errors = 0
        #: Times the flusher woke up to store something (a silent child: none).
        self.wakeups = 0

    def use_redactor(self, redactor: Redactor) -> None:
        """Redact with ``redactor`` from the next batch on: a child told to re-read a secret
        that changed may print the new value (``redactor`` holds the old ones too, so what
        was read before the switch loses nothing by it)."""
        self._redactor = redactor
        self._next_redactor = redactor

    def attach(self, stream: str, reader: asyncio.StreamReader) -> None:
        """Start reading ``stream`` (stdout or stderr) of the child into the logs table."""
        loop = asyncio.get_running_loop()
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush_loop())
        self._splitters[stream] = LineSplitter(
            self._redactor, self._levels.get(stream, "info"), self._max
        )
        self._readers.append(loop.create_task(self._read(stream, reader)))

    # --- reading (event loop: read, count, queue; nothing per line) --------------------------

    async def _read(self, stream: str, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                chunk = await reader.read(CHUNK)
            except (ConnectionError, OSError):  # a broken pipe ends the log like EOF
                chunk = b""
            if not chunk:
                break
            lines = chunk.count(b"\n")
            self.read += lines
            now = self._clock()
            if lines and self._queued_lines + lines > self._cap:
                self.dropped += lines
                at = chunk.rfind(b"\n") + 1
                context = chunk[max(0, at - self._redactor.hold_bytes) : at]
                self._queue.append(_Chunk(now, stream, chunk[at:], lines, context))
                self._data.set()
                self._wake.set()
                continue
            self._queue.append(_Chunk(now, stream, chunk, 0))
            self._queued_lines += lines
            self._data.set()
            if self._queued_lines >= self._batch_lines:
                self._wake.set()

    # --- processing and storing -------------------------------------------------------------

    def _process(
        self, chunks: list[_Chunk], final: bool, redactor: Redactor | None = None
    ) -> list[CapturedLine]:
        """Runs in a worker thread: split, redact, decode (switching to ``redactor`` first)."""
        out: list[CapturedLine] = []
        if redactor is not None:
            for splitter in self._splitters.values():
                splitter.use(redactor)
        for chunk in chunks:
            self._splitters[chunk.stream].feed(chunk, out)
        if final:
            now = self._clock()
            for stream, splitter in self._splitters.items():
                splitter.finish(now, stream, out)
        return out

    async def _flush_loop(self) -> None:
        while True:
            # Asleep until there is something to store: no timer while the child is silent.
            await self._data.wait()
            self.wakeups += 1
            if not self._closing:
                # A batch: up to batch_ms from its first chunk, less if it fills up first.
                with contextlib.suppress(TimeoutError):
                    await within(self._wake.wait(), self._batch_s)
            # Cleared right before _drain takes the queue (no await in between): a chunk
            # queued from here on sets _data again and is stored by the next pass.
            self._data.clear()
            self._wake.clear()
            final = self._closing
            await self._drain(final)
            if final:
                return

    async def _drain(self, final: bool) -> None:
        if not self._queue and not final:
            return
        chunks, self._queue = self._queue, []
        redactor, self._next_redactor = self._next_redactor, None
        taken = sum(c.data.count(b"\n") for c in chunks if not c.dropped)
        lines = await asyncio.to_thread(self._process, chunks, final, redactor)
        for start in range(0, len(lines), self._batch_lines):
            batch = lines[start : start + self._batch_lines]
            try:
                await self._sink(batch)
            except Exception:
                # Storage refused the batch (disk full, DB closed). The child must keep
                # running; the loss is counted like any other drop.
                self.sink_errors += 1
                self.dropped += len(batch)
                continue
            self.stored += len(batch)
        self._queued_lines -= taken

    async def close(self, eof_timeout: float | None = None) -> None:
        """Wait for EOF on every attached pipe (at most ``eof_timeout``: a process outside
        the child's tree may hold a pipe open), then store everything read, drops included.
        Storing is never cut short: lines already read are not lost to a timeout."""
        if self._readers:
            _done, pending = await asyncio.wait(self._readers, timeout=eof_timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._readers, return_exceptions=True)
        self._closing = True
        self._data.set()
        self._wake.set()
        if self._flusher is not None:
            await self._flusher

    async def abort(self) -> None:
        """Cancel the readers and the flusher without draining (the child is gone)."""
        tasks = [*self._readers, *([self._flusher] if self._flusher else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
