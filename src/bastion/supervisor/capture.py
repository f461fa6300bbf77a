"""Capture of a child's stdout/stderr: chunked pipe reads -> lines -> redaction -> batches.

Why this shape (bench/logs.py measures it): reading 64 KiB chunks and splitting them into
lines keeps up with a child writing as fast as it can, where ``readline`` per line does not;
one batched insert per ~1,000 lines or ~50 ms, whichever comes first, keeps storage off the
per-line path. The reader never waits for storage: lines go into a bounded buffer, and when
storage is slower than the child for longer than that buffer lasts, the overflow is counted
and a ``[bastion] N lines dropped`` line is stored in its place, so a gap is never silent.

Every line is redacted (bytes, before decoding) by the child's :class:`Redactor`; a line
longer than ``line_max_bytes`` is split, never inside a secret nor inside a UTF-8 character;
invalid UTF-8 is replaced with U+FFFD.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import NamedTuple

from bastion.supervisor.redact import Redactor

__all__ = ["CapturedLine", "LogCapture", "Sink"]

CHUNK = 64 * 1024


class CapturedLine(NamedTuple):
    ts: float
    stream: str
    level: str
    message: str


#: Stores one batch (in order). Runs while the readers keep reading.
Sink = Callable[[list[CapturedLine]], Awaitable[None]]


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
        self._buffer: collections.deque[CapturedLine] = collections.deque()
        self._wake = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closing = False
        self._dropped_pending: dict[str, int] = {}
        #: Lines read, lines handed to the sink, lines dropped (buffer full).
        self.read = 0
        self.stored = 0
        self.dropped = 0
        self.sink_errors = 0

    def attach(self, stream: str, reader: asyncio.StreamReader) -> None:
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        self._readers.append(asyncio.get_running_loop().create_task(self._read(stream, reader)))

    # --- reading (event loop; never awaits storage) -----------------------------------------

    async def _read(self, stream: str, reader: asyncio.StreamReader) -> None:
        pending = b""
        limit = self._max
        while True:
            try:
                chunk = await reader.read(CHUNK)
            except (ConnectionError, OSError):  # the pipe broke: same as EOF for a log
                chunk = b""
            if not chunk:
                break
            now = self._clock()
            data = pending + chunk if pending else chunk
            lines = data.split(b"\n")
            pending = lines.pop()
            for line in lines:
                self._emit(
                    now, stream, self._emit_head(now, stream, line) if len(line) > limit else line
                )
            # Keep what waits for its newline bounded too.
            pending = self._emit_head(now, stream, pending)
        if pending:
            self._emit(self._clock(), stream, pending)

    def _emit_head(self, now: float, stream: str, data: bytes) -> bytes:
        """Emit ``line_max_bytes`` pieces of ``data`` until at most that much is left; return
        the rest."""
        while len(data) > self._max:
            cut = self._cut(data)
            self._emit(now, stream, data[:cut])
            data = data[cut:]
        return data

    def _cut(self, data: bytes) -> int:
        """Where to split an over-long line: at the limit, but not in a secret or a character."""
        cut = self._max
        for start, end in self._redactor.spans(data[: self._max + 4096]):
            if start < cut < end:
                cut = start if start > 0 else end
                break
        # Back up to the first byte of a UTF-8 sequence (continuation bytes are 10xxxxxx).
        back = 0
        while (
            back < 3
            and cut - back > 0
            and cut - back < len(data)
            and (data[cut - back] & 0xC0) == 0x80
        ):
            back += 1
        if back < 3 and cut - back > 0:
            cut -= back
        return cut

    def _emit(self, ts: float, stream: str, raw: bytes) -> None:
        self.read += 1
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        buffer = self._buffer
        if len(buffer) >= self._cap:
            self.dropped += 1
            self._dropped_pending[stream] = self._dropped_pending.get(stream, 0) + 1
            self._wake.set()
            return
        if self._dropped_pending.get(stream):
            self._note_drops(ts, stream)
        text = self._redactor.redact(raw).decode("utf-8", "replace")
        buffer.append(CapturedLine(ts, stream, self._levels.get(stream, "info"), text))
        if len(buffer) >= self._batch_lines:
            self._wake.set()

    def _note_drops(self, ts: float, stream: str) -> None:
        count = self._dropped_pending.pop(stream)
        self._buffer.append(
            CapturedLine(
                ts, stream, "warning", f"[bastion] {count} lines dropped (log buffer full)"
            )
        )

    # --- flushing -----------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._batch_s)
            self._wake.clear()
            await self._drain()
            if self._closing and not self._buffer:
                return

    async def _drain(self) -> None:
        while self._buffer:
            take = min(len(self._buffer), self._batch_lines)
            batch = [self._buffer.popleft() for _ in range(take)]
            try:
                await self._sink(batch)
            except Exception:
                # Storage refused the batch (disk full, DB closed). The child must keep
                # running; the loss is counted and reported like any other drop.
                self.sink_errors += 1
                self.dropped += len(batch)
                continue
            self.stored += len(batch)

    async def close(self) -> None:
        """Wait for EOF on every attached pipe, then store what is left (including drops)."""
        if self._readers:
            await asyncio.gather(*self._readers, return_exceptions=True)
        now = self._clock()
        for stream in list(self._dropped_pending):
            self._note_drops(now, stream)
        self._closing = True
        self._wake.set()
        if self._flusher is not None:
            await self._flusher

    async def abort(self) -> None:
        for task in [*self._readers, *([self._flusher] if self._flusher else [])]:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
