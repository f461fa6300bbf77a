"""Log capture throughput: bastion's capture (redaction on, real logs table) against a parent
that reads the same child's pipes and discards, in the same run; and searching the logs table
at the size a long-running install reaches.

    .venv/bin/python bench/logs.py [LINES] [--search-rows N]

Prints: the child's rate under capture vs under the discarding parent (is the child slowed
down? target >= 0.8x), the end-to-end stored rate, lines lost, and redaction alone on log
text (URLs with percent-escapes, JSON lines) against splitting and decoding the same bytes
into lines (what the capture does anyway), for 5 secrets and for 64 secrets of 128 characters.
The child prints its injected secret in several forms, so the capture redacts as it stores.

Search (``--search-rows``, default 1,000,000 lines in a real logs table): ``LogsRepo.query(text=)``
through the full-text index against the LIKE scan every version before it ran (the same SQL,
on the same file) for a text that is absent (target >= 50x), rare and common; and source +
level through the composite index against the (source, ts) index it had before.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import string
import sys
import tempfile
import time
from pathlib import Path

from _common import best_of, ratio_line
from bastion.config import StoreConfig
from bastion.domains import core_namespace
from bastion.domains.logs import LogRecord, LogsRepo
from bastion.domains.logs import queries as logs_q
from bastion.store import Database
from bastion.store.migrations import Migrator
from bastion.supervisor.capture import CHUNK, CapturedLine, LineSplitter, LogCapture, _Chunk
from bastion.supervisor.process import widen_pipes
from bastion.supervisor.redact import Redactor

KIDS = str(Path(__file__).resolve().parents[1] / "tests" / "supervisor" / "kids.py")
_RNG = random.Random(15)
#: Random printable secrets: their percent and JSON forms are as varied as real keys'.
SECRETS = {f"S{i}": "".join(_RNG.choices(string.printable[:94], k=32)) for i in range(5)}
MANY = {f"M{i}": "".join(_RNG.choices(string.printable, k=128)) for i in range(64)}


async def _spawn(lines: int, widen: bool = True) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        KIDS,
        "spam",
        str(lines),
        "S0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"S0": SECRETS["S0"]},
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


async def capture(
    lines: int, db: Database, secrets: dict[str, str] = SECRETS
) -> tuple[float, float, int, int]:
    repo = LogsRepo(db)

    def store(batch: list[CapturedLine]) -> None:
        repo.insert_batch([LogRecord(c.ts, c.level, "bench", c.stream, c.message) for c in batch])

    async def sink(batch: list[CapturedLine]) -> None:
        await asyncio.to_thread(store, batch)

    redactor = Redactor(secrets)  # the supervisor compiles it before the spawn, too
    start = time.perf_counter()
    proc = await _spawn(lines)
    cap = LogCapture(sink, redactor, batch_ms=10, buffer_lines=lines * 2)
    assert proc.stdout is not None
    assert proc.stderr is not None
    cap.attach("stdout", proc.stdout)
    cap.attach("stderr", proc.stderr)
    await proc.wait()
    child_done = time.perf_counter() - start
    await cap.close()
    stored_done = time.perf_counter() - start
    return child_done, stored_done, cap.stored, cap.dropped


def log_text(n: int = 40_000) -> bytes:
    """Log lines as services print them: access lines with percent-escapes, JSON lines."""
    lines = []
    for i in range(n):
        if i % 2:
            lines.append(
                b"127.0.0.1 - - GET /api/v1/items?page=%d&q=caf%%C3%%A9%%20au%%20lait "
                b"HTTP/1.1 200 0.003s\n" % i
            )
        else:
            lines.append(
                b'{"ts": 1700000000.%d, "level": "info", "msg": "job done", '
                b'"path": "C:\\\\tmp\\/out", "user": "\\u00e9lise", "n": %d}\n' % (i, i)
            )
    return b"".join(lines)


def redaction_rate(
    secrets: dict[str, str], rounds: int = 5, text: bytes | None = None
) -> tuple[float, float]:
    """Bytes/s through a redacting stream (64 KiB writes, as the pipe delivers them) against
    splitting and decoding the same bytes into lines, best of ``rounds`` each."""
    text = log_text() if text is None else text
    chunks = [text[i : i + 65536] for i in range(0, len(text), 65536)]
    redactor = Redactor(secrets)
    ours = plain = 0.0
    for _ in range(rounds):
        stream = redactor.stream()
        start = time.perf_counter()
        for chunk in chunks:
            stream.feed(chunk)
        stream.finish()
        ours = max(ours, len(text) / (time.perf_counter() - start))
        start = time.perf_counter()
        for chunk in chunks:
            for line in chunk.split(b"\n"):
                line.decode("utf-8", "replace")
        plain = max(plain, len(text) / (time.perf_counter() - start))
    return ours, plain


def splitter_cpu(lines: int, secrets: dict[str, str], rounds: int = 5) -> float:
    """CPU seconds (best of ``rounds``) the capture's worker spends turning the spammer's
    output into stored lines: redaction, splitting, decoding. CPU time, so other load on the
    machine does not move it."""
    data = b"".join(b"line %d\n" % i for i in range(lines))
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    redactor = Redactor(secrets)
    best = float("inf")
    for _ in range(rounds):
        splitter = LineSplitter(redactor, "info", 16 * 1024)
        out: list[CapturedLine] = []
        start = time.process_time()
        for chunk in chunks:
            splitter.feed(_Chunk(0.0, "stdout", chunk, 0), out)
        splitter.finish(0.0, "stdout", out)
        best = min(best, time.process_time() - start)
    return best


def per_line_commit_rate(db: Database, n: int = 3000) -> float:
    repo = LogsRepo(db)
    start = time.perf_counter()
    for i in range(n):
        repo.insert_batch([LogRecord(time.time(), "info", "one", "stdout", f"line {i}")])
    return n / (time.perf_counter() - start)


#: Paired discard/capture rounds; the median pair is reported.
ROUNDS = 5


#: Words of the search table's lines; "retry" is common, an id rare, "zqxwv" absent.
_WORDS = (
    "GET",
    "POST",
    "/api/v1/items",
    "user",
    "session",
    "request",
    "done",
    "worker",
    "job",
    "queue",
    "cache",
    "miss",
    "hit",
    "took",
    "ms",
    "status=200",
    "retry",
)


def _search_lines(rows: int) -> list[LogRecord]:
    rng = random.Random(22)
    levels = ("debug", "info", "info", "info", "warning", "error")
    return [
        LogRecord(
            1_700_000_000.0 + i * 0.01,
            "critical" if i % 500 == 0 else levels[i % len(levels)],
            f"svc{i % 7}",
            "stdout",
            f"{i} "
            + " ".join(rng.choice(_WORDS) for _ in range(8))
            + f" id={rng.getrandbits(32):08x}",
        )
        for i in range(rows)
    ]


def search(rows: int) -> None:
    """Text search and source + level at ``rows`` lines: ours vs the queries before the
    full-text and composite indexes, on the same file, in the same run."""
    records = _search_lines(rows)
    with tempfile.TemporaryDirectory() as tmp:
        db = Database.open(Path(tmp) / "search.db", StoreConfig(), name="search")
        try:
            Migrator(db, backups_dir=None).migrate([core_namespace()])
            repo = LogsRepo(db)
            start = time.perf_counter()
            for i in range(0, rows, 1000):
                repo.insert_batch(records[i : i + 1000])
            stored = rows / (time.perf_counter() - start)
            db.write(lambda tx: tx.execute("ANALYZE"))
            rare = records[rows // 2].message.rsplit("id=", 1)[1]
            print(f"search: {rows:,} lines (stored at {stored:,.0f} lines/s, 1000 a batch)")
            # The SQL LogsRepo.query(text=) ran before the index: a LIKE over every message,
            # in time order, stopping at the page's LIMIT (201: a page of 200 and one more).
            scan = (
                f"SELECT {logs_q.SELECT}, ts, id FROM logs WHERE message LIKE ? ESCAPE '\\' "
                "ORDER BY ts ASC, id ASC LIMIT 201"
            )
            for label, text, target in (
                ("absent text", "zqxwv", ">= 50x"),
                ("rare text (one line)", f"id={rare}", "informative"),
                ("common text (most lines)", "retry", "informative"),
            ):
                runs = 3 if label.startswith("common") else 5
                before = best_of(runs, lambda t=text: db.query(scan, (f"%{t}%",)))
                ours = best_of(runs, lambda t=text: repo.query(text=t, limit=200))
                print(
                    ratio_line(
                        f"  {label}: index vs LIKE scan (queries/s)", 1 / ours, 1 / before, target
                    )
                )
            # Before: one query over the (source, ts) index, testing each line's level.
            for level in ("critical", "error", "info"):
                floor = logs_q.LEVELS.index(level)
                marks = ", ".join(f"'{lv}'" for lv in logs_q.LEVELS[floor:])
                old = (
                    f"SELECT {logs_q.SELECT}, ts, id FROM logs INDEXED BY logs_source_ts "
                    f"WHERE source = ? AND level IN ({marks}) ORDER BY ts ASC, id ASC LIMIT 201"
                )
                before = best_of(5, lambda o=old: db.query(o, ("svc3",)))
                ours = best_of(5, lambda lv=level: repo.query(source="svc3", level=lv, limit=200))
                print(
                    ratio_line(
                        f"  source + level >= {level}: ours vs (source, ts) index",
                        1 / ours,
                        1 / before,
                        "informative",
                    )
                )
        finally:
            db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lines", nargs="?", type=int, default=200_000)
    parser.add_argument("--search-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    lines = args.lines
    # The spammer also writes every 10th line to stderr, and 5 lines with its secret first.
    total = lines + (lines + 9) // 10 + 5
    with tempfile.TemporaryDirectory() as tmp:
        db = Database.open(Path(tmp) / "bench.db", StoreConfig(), name="bench")
        Migrator(db, backups_dir=None).migrate([core_namespace()])
        # Paired rounds (discard, then capture), the median of the pairs' ratios: on a
        # loaded machine a burst of other work then hits one pair, not a whole side.
        pairs = []
        # The same capture with no secret, paired too: what redaction itself costs.
        bare: list[tuple[float, float]] = []
        for _ in range(ROUNDS):
            base_s = asyncio.run(discard(lines))
            pairs.append((base_s, asyncio.run(capture(lines, db))))
            bare.append((asyncio.run(discard(lines)), asyncio.run(capture(lines, db, {}))[0]))
        pairs.sort(key=lambda p: p[0] / p[1][0])
        base, (child_done, stored_done, stored, dropped) = pairs[len(pairs) // 2]
        bare.sort(key=lambda p: p[0] / p[1])
        bare_base, bare_child = bare[len(bare) // 2]
        one = per_line_commit_rate(db)
        db.close()
    cpu_with, cpu_without = splitter_cpu(lines, SECRETS), splitter_cpu(lines, {})
    red, plain = redaction_rate(SECRETS)
    many, many_plain = redaction_rate(MANY)
    # The worst case: a child that prints its secret on every line (each match costs a call).
    leaky = b"".join(
        b"GET /cb?i=%d&token=%s 200\n" % (i, SECRETS["S0"].encode()) for i in range(20_000)
    )
    dense, dense_plain = redaction_rate(SECRETS, text=leaky)
    print(f"lines per run: {total:,} (stdout {lines + 5:,} + stderr {total - lines - 5:,})")
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
            "  the same capture without secrets vs discarding",
            total / bare_child,
            total / bare_base,
            "informative",
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
    print(
        ratio_line(
            "capture worker CPU: with redaction vs without (lines/s)",
            lines / cpu_with,
            lines / cpu_without,
            "informative",
        )
    )
    print(ratio_line("redacting 5 secrets vs split+decode (bytes/s)", red, plain, "informative"))
    print(
        ratio_line(
            "redacting 64 secrets of 128 chars vs split+decode", many, many_plain, "informative"
        )
    )
    print(
        ratio_line(
            "  ... when every line holds a secret vs split+decode",
            dense,
            dense_plain,
            "informative",
        )
    )
    print(f"lines lost: {total - stored} (counted drops: {dropped}); stored {stored:,}")
    search(args.search_rows)


if __name__ == "__main__":
    main()
