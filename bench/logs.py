"""Log capture throughput: bastion's capture (redaction on, real logs table) against a parent
that reads the same child's pipes and discards, in the same run.

    .venv/bin/python bench/logs.py [LINES]

Prints: the child's rate under capture vs under the discarding parent (is the child slowed
down?), the end-to-end stored rate, lines lost, the redaction rate for 5 secrets, and the
per-line-commit alternative for scale.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from _common import ratio_line
from bastion.config import StoreConfig
from bastion.domains import core_namespace
from bastion.domains.logs import LogRecord, LogsRepo
from bastion.store import Database
from bastion.store.migrations import Migrator
from bastion.supervisor.capture import CapturedLine, LogCapture
from bastion.supervisor.process import widen_pipes
from bastion.supervisor.redact import Redactor

KIDS = str(Path(__file__).resolve().parents[1] / "tests" / "supervisor" / "kids.py")
SECRETS = {f"S{i}": f"secret-value-{i}-{'x' * 20}" for i in range(5)}


async def _spawn(lines: int, widen: bool = True) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        KIDS,
        "spam",
        str(lines),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={},
    )
    if widen:
        widen_pipes(proc)  # what the supervisor's spawn does; the baseline gets it too
    return proc


async def discard(lines: int) -> float:
    """Baseline: read both pipes in 64 KiB chunks and throw them away."""
    start = time.perf_counter()
    proc = await _spawn(lines)

    async def drain(reader: asyncio.StreamReader) -> None:
        while await reader.read(1 << 20):
            pass

    assert proc.stdout is not None
    assert proc.stderr is not None
    await asyncio.gather(drain(proc.stdout), drain(proc.stderr), proc.wait())
    return time.perf_counter() - start


async def capture(lines: int, db: Database) -> tuple[float, float, int, int]:
    repo = LogsRepo(db)

    def store(batch: list[CapturedLine]) -> None:
        repo.insert_batch([LogRecord(c.ts, c.level, "bench", c.stream, c.message) for c in batch])

    async def sink(batch: list[CapturedLine]) -> None:
        await asyncio.to_thread(store, batch)

    start = time.perf_counter()
    proc = await _spawn(lines)
    cap = LogCapture(sink, Redactor(SECRETS), batch_ms=10, buffer_lines=lines * 2)
    assert proc.stdout is not None
    assert proc.stderr is not None
    cap.attach("stdout", proc.stdout)
    cap.attach("stderr", proc.stderr)
    await proc.wait()
    child_done = time.perf_counter() - start
    await cap.close()
    stored_done = time.perf_counter() - start
    return child_done, stored_done, cap.stored, cap.dropped


def redaction_rate(n: int = 500_000) -> tuple[float, float]:
    redactor = Redactor(SECRETS)
    lines = [b"GET /api/v1/items?page=%d HTTP/1.1 200 0.003s user=alice" % i for i in range(n)]
    start = time.perf_counter()
    for line in lines:
        redactor.redact(line).decode("utf-8", "replace")
    ours = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for line in lines:
        line.decode("utf-8", "replace")
    plain = n / (time.perf_counter() - start)
    return ours, plain


def per_line_commit_rate(db: Database, n: int = 3000) -> float:
    repo = LogsRepo(db)
    start = time.perf_counter()
    for i in range(n):
        repo.insert_batch([LogRecord(time.time(), "info", "one", "stdout", f"line {i}")])
    return n / (time.perf_counter() - start)


def main() -> None:
    lines = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    total = lines + (lines + 9) // 10  # the spammer also writes every 10th line to stderr
    with tempfile.TemporaryDirectory() as tmp:
        db = Database.open(Path(tmp) / "bench.db", StoreConfig(), name="bench")
        Migrator(db, backups_dir=None).migrate([core_namespace()])
        base = min(asyncio.run(discard(lines)) for _ in range(3))
        runs = [asyncio.run(capture(lines, db)) for _ in range(3)]
        child_done, stored_done, stored, dropped = min(runs, key=lambda r: r[0])
        one = per_line_commit_rate(db)
        db.close()
    red, plain = redaction_rate()
    print(f"lines per run: {total:,} (stdout {lines:,} + stderr {total - lines:,})")
    print(
        ratio_line(
            "child rate under capture vs discarding parent",
            total / child_done,
            total / base,
            ">= 0.8x",
        )
    )
    print(
        ratio_line(
            "stored rate (redacted, in the logs table) vs discarding",
            total / stored_done,
            total / base,
            "informative",
        )
    )
    print(ratio_line("one commit per line vs discarding", one, total / base, "informative"))
    print(ratio_line("redaction of 5 secrets vs decode only", red, plain, "informative"))
    print(f"lines lost: {total - stored} (counted drops: {dropped}); stored {stored:,}")


if __name__ == "__main__":
    main()
