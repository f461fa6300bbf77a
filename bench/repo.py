"""Typed repositories against raw apsw, SQLAlchemy Core and sqlite-utils, in one run.

    .venv/bin/python bench/repo.py [ROWS]

Three workloads on the real ``core`` schema (each library on its own file, same pragmas: WAL,
synchronous=NORMAL, foreign_keys=ON):

* single-row insert, each row its own write unit/transaction (``ActivityRepo.record``);
* bulk insert of ROWS log records in one transaction (``LogsRepo.insert_batch``);
* get by id returning a typed row (``ActivityRepo.get``; raw returns a bare tuple).

Prints each as a rate and as a ratio to raw apsw (targets: insert >= 0.8x, bulk >= 0.9x,
get >= 0.8x). SQLAlchemy Core and sqlite-utils do the same work for comparison. Needs the
``bench`` extra (``uv pip install -e '.[bench]'``).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw

from _common import best_of, ratio_line
from bastion.domains import core_namespace
from bastion.domains.activity import ActivityRepo
from bastion.domains.activity import queries as activity_q
from bastion.domains.logs import LogRecord, LogsRepo
from bastion.domains.logs import queries as logs_q
from bastion.store import Database
from bastion.store.migrations import Migrator

DETAILS = {"secret": "name", "backend": "keychain"}


def _prepare(path: Path) -> None:
    """Create the core schema on ``path`` (through bastion, so every file is identical)."""
    db = Database.open(path)
    try:
        Migrator(db).migrate([core_namespace()])
    finally:
        db.close()


def _records(n: int) -> list[LogRecord]:
    now = time.time()
    return [
        LogRecord(
            now + i * 1e-3,
            "info" if i % 7 else "error",
            f"svc{i % 4}",
            "stdout",
            f"line {i} of output",
            None,
        )
        for i in range(n)
    ]


# --- bastion -----------------------------------------------------------------------------


class Bastion:
    name = "bastion typed repo"

    def __init__(self, path: Path) -> None:
        self.db = Database.open(path)
        self.activity = ActivityRepo(self.db)
        self.logs = LogsRepo(self.db)

    def insert_one(self, i: int) -> int:
        return self.activity.record("bench", "insert", f"subject{i}", DETAILS, ts=float(i)).id

    def bulk(self, records: list[LogRecord]) -> None:
        self.logs.insert_batch(records)

    def get(self, row_id: int) -> Any:
        return self.activity.get(row_id)

    def close(self) -> None:
        self.db.close()


# --- raw apsw ------------------------------------------------------------------------------


class Raw:
    name = "raw apsw"

    def __init__(self, path: Path) -> None:
        self.conn = apsw.Connection(str(path))
        self.conn.pragma("journal_mode", "wal")
        self.conn.pragma("synchronous", "NORMAL")
        self.conn.pragma("foreign_keys", 1)
        self.conn.setbusytimeout(5000)

    def insert_one(self, i: int) -> int:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            activity_q.INSERT, (float(i), "bench", "insert", f"subject{i}", json.dumps(DETAILS))
        )
        row_id = conn.last_insert_rowid()
        conn.execute("COMMIT")
        return int(row_id)

    def bulk(self, records: list[LogRecord]) -> None:
        conn = self.conn
        rows = [(r.ts, r.level, r.source, r.stream, r.message, None) for r in records]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(logs_q.INSERT, rows)
        conn.execute("COMMIT")

    def get(self, row_id: int) -> Any:
        return self.conn.execute(activity_q.GET, (row_id,)).fetchone()

    def close(self) -> None:
        self.conn.close()


# --- SQLAlchemy Core -----------------------------------------------------------------------


class Alchemy:
    name = "SQLAlchemy Core"

    def __init__(self, path: Path) -> None:
        from sqlalchemy import MetaData, Table, create_engine, event, select

        self.engine = create_engine(f"sqlite:///{path}")

        @event.listens_for(self.engine, "connect")
        def _pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        meta = MetaData()
        self.activity = Table("activity", meta, autoload_with=self.engine)
        self.logs = Table("logs", meta, autoload_with=self.engine)
        self.get_stmt = select(self.activity).where(self.activity.c.id == self._bind())
        self.conn = self.engine.connect()

    @staticmethod
    def _bind() -> Any:
        from sqlalchemy import bindparam

        return bindparam("row_id")

    def insert_one(self, i: int) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(
                self.activity.insert(),
                {
                    "ts": float(i),
                    "actor": "bench",
                    "action": "insert",
                    "subject": f"subject{i}",
                    "details": json.dumps(DETAILS),
                },
            )
            return int(result.inserted_primary_key[0])

    def bulk(self, records: list[LogRecord]) -> None:
        rows = [
            {
                "ts": r.ts,
                "level": r.level,
                "source": r.source,
                "stream": r.stream,
                "message": r.message,
                "fields": None,
            }
            for r in records
        ]
        with self.engine.begin() as conn:
            conn.execute(self.logs.insert(), rows)

    def get(self, row_id: int) -> Any:
        return self.conn.execute(self.get_stmt, {"row_id": row_id}).first()

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()


# --- sqlite-utils --------------------------------------------------------------------------


class SqliteUtils:
    name = "sqlite-utils"

    def __init__(self, path: Path) -> None:
        import sqlite_utils

        self.db = sqlite_utils.Database(str(path))
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.activity = self.db.table("activity")
        self.logs = self.db.table("logs")

    def insert_one(self, i: int) -> int:
        with self.db.conn:
            self.activity.insert(
                {
                    "ts": float(i),
                    "actor": "bench",
                    "action": "insert",
                    "subject": f"subject{i}",
                    "details": json.dumps(DETAILS),
                }
            )
        return int(self.activity.last_rowid or 0)

    def bulk(self, records: list[LogRecord]) -> None:
        rows = (
            {
                "ts": r.ts,
                "level": r.level,
                "source": r.source,
                "stream": r.stream,
                "message": r.message,
                "fields": None,
            }
            for r in records
        )
        with self.db.conn:
            self.logs.insert_all(rows, batch_size=1000)

    def get(self, row_id: int) -> Any:
        return self.activity.get(row_id)

    def close(self) -> None:
        self.db.close()


# --- the run -------------------------------------------------------------------------------


class RawDecoded(Raw):
    """Raw apsw doing the same work a typed get does: decode the JSON column too."""

    name = "raw apsw + json.loads (same work)"

    def get(self, row_id: int) -> Any:
        row = self.conn.execute(activity_q.GET, (row_id,)).fetchone()
        return (*row[:5], json.loads(row[5]) if row[5] is not None else None)


class BastionDetails(Bastion):
    """The typed get, then reading the JSON column (decoded on first read): the same work as
    ``RawDecoded``."""

    name = "bastion typed repo, then reading .details"

    def get(self, row_id: int) -> Any:
        row = self.activity.get(row_id)
        if row is not None and row.details is None:
            raise AssertionError("details missing")
        return row


def _rate(count: int, seconds: float) -> float:
    return count / seconds


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    rounds = 5
    records = _records(rows)
    singles = max(500, rows // 10)
    factories: list[Callable[[Path], Any]] = [Raw, Bastion, Alchemy, SqliteUtils]
    best: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bastion-bench-repo-") as tmp:
        impls = []
        for factory in factories:
            path = Path(tmp) / f"{factory.__name__.lower()}.db"
            _prepare(path)
            try:
                impls.append(factory(path))
            except ImportError as err:  # a comparison point, not what is measured
                print(
                    f"{factory.__name__}: skipped, {err.name} is not installed "
                    "(pip install -e '.[bench]'; `make test` installs it)"
                )
        decoded = RawDecoded(Path(tmp) / "raw.db")
        details = BastionDetails(Path(tmp) / "bastion.db")
        try:
            # Rounds interleave the libraries, so load from other processes on this machine
            # hits all of them alike; each keeps its best round.
            counter = iter(range(10**9))
            for _ in range(rounds):
                for impl in impls:
                    res = best.setdefault(impl.name, {"insert": 0.0, "bulk": 0.0, "get": 0.0})

                    def insert_many(impl: Any = impl) -> None:
                        for _ in range(singles):
                            impl.insert_one(next(counter))

                    res["insert"] = max(res["insert"], _rate(singles, best_of(1, insert_many)))
                    res["bulk"] = max(
                        res["bulk"], _rate(rows, best_of(1, lambda impl=impl: impl.bulk(records)))
                    )
            ids = list(range(1, singles + 1))
            for _ in range(rounds):
                for impl in [*impls, decoded, details]:
                    res = best.setdefault(impl.name, {"insert": 0.0, "bulk": 0.0, "get": 0.0})

                    def get_all(get: Callable[[int], Any] = impl.get) -> None:
                        for row_id in ids:
                            if get(row_id) is None:
                                raise AssertionError(f"row {row_id} missing")

                    res["get"] = max(res["get"], _rate(len(ids), best_of(1, get_all)))
        finally:
            for impl in impls:
                impl.close()
            decoded.close()
            details.close()
    raw = best["raw apsw"]
    targets = {"insert": ">= 0.8x", "bulk": ">= 0.9x", "get": ">= 0.8x"}
    labels = {
        "insert": f"single-row insert, own write unit each ({singles} rows)",
        "bulk": f"bulk insert, {rows} rows in one transaction",
        "get": f"get by id, typed row ({singles} lookups)",
    }
    print(f"bench/repo.py  (best of {rounds} interleaved rounds; ratios vs raw apsw in this run)")
    for key in ("insert", "bulk", "get"):
        print()
        print(f"{labels[key]}:")
        for name, res in best.items():
            if name in ("raw apsw", BastionDetails.name) or not res[key]:
                continue
            target = targets[key] if name == "bastion typed repo" else "comparison"
            print("  " + ratio_line(name, res[key], raw[key], target))
    same = best["raw apsw + json.loads (same work)"]["get"]
    print(
        "  "
        + ratio_line(
            "bastion get + .details vs raw + json.loads (same work)",
            best[BastionDetails.name]["get"],
            same,
            "info",
        )
    )


if __name__ == "__main__":
    main()
