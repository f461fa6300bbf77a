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
from _common import best_of, ratio_line
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

        raw_t = best_of(3, raw_loop)
        pool_t = best_of(3, pool_loop)
        async_t = best_of(3, lambda: asyncio.run(async_loop()))
        db.close()
        raw.close()
    n = args.reads
    print(f"point reads by primary key, {n} per run, best of 3")
    print(
        ratio_line("  pool (db.query_one) vs raw apsw connection", n / pool_t, n / raw_t, ">= 0.9x")
    )
    print(
        ratio_line(
            "  async (await db.aquery_one) vs raw apsw connection",
            n / async_t,
            n / raw_t,
            ">= 0.6x",
        )
    )


if __name__ == "__main__":
    main()
