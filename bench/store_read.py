"""Read-path benchmarks of the store core (issue 3), ratios against raw apsw in one run.

Point reads by primary key from one thread:
- through the pool (``db.query_one``) vs a raw apsw connection: target >= 0.9x
- through the async API (``await db.aquery_one``) vs the same raw loop: target >= 0.6x

Run: ``.venv/bin/python bench/store_read.py [--reads N]``
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from pathlib import Path

import apsw

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, timed
from bastion.store import Database

ROWS = 10_000
SQL = "SELECT id, name, score FROM items WHERE id = ?"


def build(path: Path) -> None:
    conn = apsw.Connection(str(path))
    conn.pragma("journal_mode", "wal")
    conn.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL)")
    with conn:
        conn.executemany(
            "INSERT INTO items VALUES (?, ?, ?)", ((i, f"item-{i}", i * 0.5) for i in range(ROWS))
        )
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reads", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=9, help="rounds of the three runs")
    args = parser.parse_args()
    ids = [random.randrange(ROWS) for _ in range(args.reads)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "read.db"
        build(path)
        raw = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)

        def raw_loop() -> None:
            for i in ids:
                for row in raw.execute(SQL, (i,)):
                    assert row[0] == i
                    break

        db = Database.open(path)

        def pool_loop() -> None:
            for i in ids:
                row = db.query_one(SQL, (i,))
                assert row is not None

        async def async_loop() -> None:
            # One coroutine awaiting each read in turn, as a request handler does.
            for i in ids:
                row = await db.aquery_one(SQL, (i,))
                assert row is not None

        # Rounds of raw, pool and async runs side by side, the order rotating each round: the
        # machine's speed drifts over seconds, and a ratio of runs made together cancels the
        # drift that three best-ofs taken one after another keep. The median round counts.
        loops = [raw_loop, pool_loop, lambda: asyncio.run(async_loop())]
        pool_ratios: list[float] = []
        async_ratios: list[float] = []
        times: list[list[float]] = [[], [], []]
        for r in range(args.rounds):
            took = [0.0, 0.0, 0.0]
            for k in range(3):
                which = (r + k) % 3
                took[which] = timed(loops[which])
                times[which].append(took[which])
            pool_ratios.append(took[0] / took[1])
            async_ratios.append(took[0] / took[2])
        db.close()
        raw.close()
    n = args.reads
    raw_rate, pool_rate, async_rate = (n / median(t) for t in times)
    print(f"point reads by primary key, {n} per run, median of {args.rounds} rounds")
    print(
        f"  {'pool (db.query_one) vs raw apsw connection':<58} {median(pool_ratios):6.2f}x   "
        f"(target >= 0.9x; rounds {min(pool_ratios):.2f}-{max(pool_ratios):.2f}x; "
        f"ours {pool_rate:,.0f}/s vs baseline {raw_rate:,.0f}/s)"
    )
    print(
        f"  {'async (await db.aquery_one) vs raw apsw connection':<58} "
        f"{median(async_ratios):6.2f}x   (target >= 0.6x; rounds {min(async_ratios):.2f}-"
        f"{max(async_ratios):.2f}x; ours {async_rate:,.0f}/s vs baseline {raw_rate:,.0f}/s)"
    )


if __name__ == "__main__":
    main()
