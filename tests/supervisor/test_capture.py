"""Log capture from real pipes: order, counts, splitting, redaction and counted drops."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from bastion.supervisor.capture import CapturedLine, LogCapture
from bastion.supervisor.redact import Redactor
from tests.helpers import await_until

KIDS = str(Path(__file__).with_name("kids.py"))


class ListSink:
    """Storage stand-in that keeps batches in memory; ``gate`` makes it slow on demand."""

    def __init__(self) -> None:
        self.lines: list[CapturedLine] = []
        self.batches = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self, batch: list[CapturedLine]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.batches += 1
        self.lines.extend(batch)


async def capture_child(args: list[str], sink: ListSink, **kwargs: object) -> LogCapture:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        KIDS,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=kwargs.pop("env", {}),  # type: ignore[arg-type]
    )
    capture = LogCapture(sink, kwargs.pop("redactor", Redactor({})), **kwargs)  # type: ignore[arg-type]
    assert proc.stdout is not None
    assert proc.stderr is not None
    capture.attach("stdout", proc.stdout)
    capture.attach("stderr", proc.stderr)
    await proc.wait()
    await capture.close()
    return capture


@pytest.mark.posix
def test_every_line_in_order_per_stream_in_batches() -> None:
    sink = ListSink()
    capture = asyncio.run(capture_child(["spam", "50000"], sink, batch_lines=1000))
    out = [line.message for line in sink.lines if line.stream == "stdout"]
    err = [line.message for line in sink.lines if line.stream == "stderr"]
    assert out == [f"line {i}" for i in range(50000)]
    assert err == [f"err {i}" for i in range(0, 50000, 10)]
    assert capture.dropped == 0
    assert capture.stored == capture.read == 55000
    assert sink.batches >= 55  # batched by size, not one call per line
    assert {line.level for line in sink.lines if line.stream == "stderr"} == {"warning"}


@pytest.mark.posix
def test_slow_storage_drops_are_counted_and_written() -> None:
    sink = ListSink()

    async def scenario() -> LogCapture:
        sink.gate = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, sink.gate.set)  # storage stalls, then recovers
        return await capture_child(["spam", "20000"], sink, batch_lines=100, buffer_lines=500)

    capture = asyncio.run(scenario())
    stored = [line.message for line in sink.lines]
    markers = [m for m in stored if m.startswith("[bastion]")]
    assert capture.dropped > 0
    counted = sum(int(m.split()[1]) for m in markers)
    assert counted == capture.dropped
    assert len(stored) - len(markers) + capture.dropped == 22000  # nothing silently lost
    numbers = [int(m.split()[1]) for m in stored if m.startswith("line ")]
    assert numbers == sorted(numbers)  # drops leave gaps, never reorder


def test_long_lines_split_outside_secrets_and_characters() -> None:
    secret = "TOPSECRETVALUE42"

    async def scenario() -> list[CapturedLine]:
        sink = ListSink()
        reader = asyncio.StreamReader()
        capture = LogCapture(sink, Redactor({"TOKEN": secret}), line_max_bytes=256)
        capture.attach("stdout", reader)
        # A secret straddling the 256-byte limit, then multi-byte characters across it.
        reader.feed_data(b"a" * 250 + secret.encode() + b"b" * 100 + b"\n")
        reader.feed_data(("é" * 300).encode() + b"\n")
        reader.feed_data(b"bad \xff\xfe utf8\n")
        reader.feed_data(b"no newline at end")
        reader.feed_eof()
        await capture.close()
        return sink.lines

    lines = [line.message for line in asyncio.run(scenario())]
    assert secret not in "".join(lines)
    assert "".join(lines[:2]) == "a" * 250 + "[REDACTED:TOKEN]" + "b" * 100
    e_lines = [m for m in lines if m.startswith("é")]
    assert "".join(e_lines) == "é" * 300
    assert all(len(m.encode()) <= 256 for m in e_lines)
    assert "\ufffd" not in "".join(e_lines)
    assert "bad \ufffd\ufffd utf8" in lines
    assert lines[-1] == "no newline at end"


@pytest.mark.posix
def test_secret_printed_by_a_child_is_redacted() -> None:
    sink = ListSink()
    value = "sk-live-9f8e7d6c5b4a/+="
    asyncio.run(
        capture_child(
            ["spam", "10", "TOKEN"], sink, env={"TOKEN": value}, redactor=Redactor({"TOKEN": value})
        )
    )
    text = "\n".join(line.message for line in sink.lines)
    assert value not in text
    assert text.count("[REDACTED:TOKEN]") == 5


def test_a_failing_sink_counts_drops_and_capture_goes_on() -> None:
    calls = 0

    async def broken(batch: list[CapturedLine]) -> None:
        nonlocal calls
        calls += 1
        raise OSError("disk full")

    async def scenario() -> LogCapture:
        reader = asyncio.StreamReader()
        capture = LogCapture(broken, Redactor({}), batch_lines=10)
        capture.attach("stdout", reader)
        reader.feed_data(b"x\n" * 35)
        reader.feed_eof()
        await capture.close()
        return capture

    capture = asyncio.run(scenario())
    assert capture.dropped == 35
    assert capture.sink_errors == calls >= 4


class TimerCountingLoop(asyncio.SelectorEventLoop):
    """An event loop that counts the timers scheduled on it (``call_at``): a component that
    wakes up on a timer shows up here, whatever it names its attributes."""

    timers = 0

    def call_at(self, when, callback, *args, context=None):  # type: ignore[no-untyped-def]
        self.timers += 1
        return super().call_at(when, callback, *args, context=context)


@pytest.mark.posix
def test_a_silent_child_never_wakes_the_flusher() -> None:
    """Waking on data, not on a timer (issue 22 §7): with nothing on the pipes the flusher
    schedules no timer and never runs; the first line wakes it once, and is stored."""
    sink = ListSink()

    async def scenario() -> tuple[int, int, list[str]]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, TimerCountingLoop)
        read_fd, write_fd = os.pipe()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
        )
        capture = LogCapture(sink, Redactor({}), batch_ms=1)
        capture.attach("stdout", reader)
        before = loop.timers
        # Fifty batch intervals of silence. This pause is what is under test, not a wait
        # for something: a flusher on a 1 ms timer runs (its timer is due first) before it
        # ends, however loaded the machine is.
        await asyncio.sleep(0.05)
        assert loop.timers - before == 1  # the sleep above, nothing else
        silent = capture.wakeups
        os.write(write_fd, b"hello\n")
        await await_until(lambda: sink.lines, timeout=30, what="the line to be stored")
        after_line = capture.wakeups
        os.close(write_fd)
        await capture.close()
        transport.close()
        return silent, after_line, [line.message for line in sink.lines]

    with asyncio.Runner(loop_factory=TimerCountingLoop) as runner:
        silent, after_line, stored = runner.run(scenario())
    assert silent == 0
    assert after_line == 1
    assert stored == ["hello"]
