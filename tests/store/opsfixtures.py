"""Shared builders for the operability tests: real database files, damaged on purpose."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import apsw

from bastion.config import StoreConfig
from bastion.store import Database
from bastion.store.crypt import DatabaseKey
from bastion.store.crypt.cipher import connect

ITEMS_DDL = (
    "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, body TEXT);"
    "CREATE INDEX items_body ON items(body)"
)


def make_items_db(
    path: Path,
    rows: int = 500,
    *,
    config: StoreConfig | None = None,
    name: str = "bastion",
    key: DatabaseKey | None = None,
) -> Database:
    """An open database with an ``items`` table of ``rows`` rows (name ``item-<n>``);
    encrypted with ``key`` when given."""
    db = Database.open(path, config or StoreConfig(), name=name, key=key)
    db.write(lambda tx: tx.script(ITEMS_DDL))
    if rows:
        add_items(db, 0, rows)
    return db


def add_items(db: Database, start: int, count: int) -> None:
    db.write(
        lambda tx: tx.executemany(
            "INSERT INTO items(name, body) VALUES (?, ?)",
            [(f"item-{i}", f"body {i} " + "x" * (i % 97)) for i in range(start, start + count)],
        )
    )


def count_items(path: Path, key: DatabaseKey | None = None) -> int:
    conn = connect(str(path), key=key)
    try:
        return int(conn.execute("SELECT count(*) FROM items").fetchall()[0][0])
    finally:
        conn.close()


def integrity(path: Path, key: DatabaseKey | None = None) -> list[str]:
    """``integrity_check`` output; a file too damaged to check reports the error."""
    conn = connect(str(path), key=key)
    try:
        return [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
    except apsw.Error as err:
        return [f"error: {err}"]
    finally:
        conn.close()


def overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def leaf_page_offset(path: Path, table: str = "items", key: DatabaseKey | None = None) -> int:
    """Byte offset of a page in the middle of ``table``'s b-tree (via dbstat)."""
    conn = connect(str(path), key=key)
    try:
        pages = [
            int(r[0])
            for r in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno",
                (table,),
            )
        ]
        page_size = int(conn.execute("PRAGMA page_size").fetchall()[0][0])
    finally:
        conn.close()
    assert pages, f"{table} has no leaf pages"
    return (pages[len(pages) // 2] - 1) * page_size


def assert_no_plaintext(path: Path, *sentinels: bytes) -> None:
    """``path`` holds neither SQLite's header string nor any of ``sentinels`` (an encrypted
    database, its WAL, a backup of it)."""
    data = path.read_bytes()
    assert data, f"{path} is empty"
    assert b"SQLite format 3" not in data, f"{path} holds SQLite's header string"
    for sentinel in sentinels:
        assert sentinel not in data, f"{path} holds {sentinel!r}"


def build_salvage_fixture(path: Path, seed: int = 0) -> None:
    """10,000 rows, then three 64-byte runs of random bytes written into the middle of the
    file (at 40%, 50% and 60% of its size): the benchmark's damaged file."""
    rnd = random.Random(seed)
    conn = apsw.Connection(str(path))
    conn.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, body TEXT)")
    with conn:
        for i in range(10_000):
            conn.execute(
                "INSERT INTO items(name, body) VALUES (?, ?)",
                (f"item-{i}", "x" * rnd.randint(20, 120)),
            )
    conn.close()
    size = path.stat().st_size
    for fraction in (0.4, 0.5, 0.6):
        overwrite(path, int(size * fraction), rnd.randbytes(64))


def dump_recovers(path: Path, work: Path) -> int:
    """Rows ``sqlite3 path .dump`` recovers, with its closing ROLLBACK turned into COMMIT."""
    sqlite3 = shutil.which("sqlite3")
    assert sqlite3 is not None
    dump = subprocess.run([sqlite3, str(path), ".dump"], capture_output=True, check=False).stdout
    dump = dump.replace(b"ROLLBACK; -- due to errors", b"COMMIT;")
    target = work / "from-dump.db"
    target.unlink(missing_ok=True)
    subprocess.run([sqlite3, str(target)], input=dump, capture_output=True, check=False)
    return count_items(target)
