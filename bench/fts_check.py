"""What the full check's FTS5 additions cost, against SQLite's own check in the same run, on a
real logs table (bastion's logs_fts: trigram, detail=none, external content).

    .venv/bin/python bench/fts_check.py [--rows N] [--rounds R]

Per round, interleaved on the same file and the same pooled reader: ``PRAGMA quick_check``
and ``integrity_check`` (what the open-time and full checks ran before), the look for leaf
pages without an ``_idx`` entry (added to both checks), and FTS5's comparison with the content
on a temp-schema copy (added to the full check), with FTS5's command run directly on the
writer as the alternative it replaces (which would hold the write lock throughout). Prints
medians, the spread (min-max) and ratios to the pragma: the quick look is meant to stay a
few percent of quick_check; the comparison is the price of seeing an index out of step.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import median
from bastion.config import StoreConfig
from bastion.domains import core_namespace
from bastion.domains.logs import LogRecord, LogsRepo
from bastion.store import Database
from bastion.store.fts import _compare, _drop_copy, fts5_tables, unindexed_pages
from bastion.store.migrations import Migrator
from bastion.store.stats import check_rows


def _fill(db: Database, rows: int) -> None:
    words = ["alpha", "request", "handled", "service", "ok", "error", "retry", "GET /v1/x"]
    repo = LogsRepo(db)
    batch = 5000
    for start in range(0, rows, batch):
        repo.insert_batch(
            LogRecord(
                float(i),
                "info",
                f"svc{i % 7}",
                "stdout",
                f"{words[i % 8]} {i} took {i * 7919 % 977} ms {words[(i * 3) % 8]} id={i * 104729}",
            )
            for i in range(start, min(rows, start + batch))
        )


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Database.open(Path(tmp) / "bench.db", StoreConfig(readers=1))
        try:
            Migrator(db).migrate([core_namespace()])
            _fill(db, args.rows)
            table = next(t for t in db.read(fts5_tables) if t.name == "logs_fts")

            def compare() -> None:
                def unit(tx: object) -> None:
                    try:
                        assert _compare(tx, table) is None  # type: ignore[arg-type]
                    finally:
                        _drop_copy(tx)  # type: ignore[arg-type]

                db.read(unit)  # type: ignore[arg-type]

            def on_writer() -> None:
                db.write(
                    lambda tx: tx.execute(
                        "INSERT INTO logs_fts (logs_fts, rank) VALUES ('integrity-check', 1)"
                    )
                )

            runs: dict[str, Callable[[], object]] = {
                "quick_check": lambda: db.read(lambda tx: check_rows(tx, "quick_check")),
                "integrity_check": lambda: db.read(lambda tx: check_rows(tx, "integrity_check")),
                "_idx look (quick + full)": lambda: db.read(lambda tx: unindexed_pages(tx, table)),
                "comparison on a copy (full)": compare,
                "comparison on the writer (not used)": on_writer,
            }
            times: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(args.rounds):
                for name, fn in runs.items():  # interleaved: load drifts hit every one alike
                    times[name].append(_timed(fn))
        finally:
            db.close()
    quick, full = median(times["quick_check"]), median(times["integrity_check"])
    print(f"{args.rows:,} log lines, {args.rounds} interleaved rounds (median, min-max):")
    for name, values in times.items():
        print(
            f"  {name:<38} {median(values) * 1000:9.1f} ms  "
            f"({min(values) * 1000:.1f}-{max(values) * 1000:.1f})  "
            f"{median(values) / quick:6.2f}x quick_check  {median(values) / full:6.2f}x integrity_check"
        )
    look = median(times["_idx look (quick + full)"]) / quick
    print(f"the _idx look on the quick path: {look:.3f}x quick_check (target <= 0.1x)")
    cost = (median(times["comparison on a copy (full)"]) + full) / full
    print(
        f"the full check with the comparison: {cost:.2f}x integrity_check alone (target: reported)"
    )


if __name__ == "__main__":
    main()
