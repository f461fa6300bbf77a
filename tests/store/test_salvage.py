"""Salvage: our own recovery of readable rows from damaged files, compared with ``.dump``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bastion.store.crypt import DatabaseKey
from bastion.store.crypt.cipher import connect
from bastion.store.salvage import salvage
from tests.store.opsfixtures import (
    build_salvage_fixture,
    count_items,
    dump_recovers,
    integrity,
    leaf_page_offset,
    make_items_db,
    overwrite,
)

# Every test that takes db_key runs twice: plaintext, then encrypted (tests/conftest.py).
pytestmark = pytest.mark.encrypted_rerun


def test_salvage_of_a_healthy_file_is_a_full_copy_with_schema(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    db = make_items_db(tmp_path / "ok.db", 1234, key=db_key)
    db.write(
        lambda tx: tx.script(
            "CREATE TABLE tags(id INTEGER PRIMARY KEY AUTOINCREMENT, item INTEGER "
            "REFERENCES items(id), tag TEXT);"
            "CREATE TABLE kv(k TEXT PRIMARY KEY, v) WITHOUT ROWID;"
            "CREATE TABLE plain(a, b);"
            "CREATE VIEW v_items AS SELECT name FROM items;"
            "CREATE TRIGGER t_items AFTER DELETE ON items BEGIN DELETE FROM tags "
            "WHERE item = old.id; END;"
            "INSERT INTO tags(item, tag) VALUES (1, 'a'), (2, 'b');"
            "INSERT INTO kv VALUES ('x', 1), ('y', 2);"
            "INSERT INTO plain(rowid, a, b) VALUES (7, 'seven', x'00ff'), (9, NULL, 3.5)"
        )
    )
    db.close()
    result = salvage(tmp_path / "ok.db", tmp_path / "out.db", key=db_key)
    assert result.schema_errors == ()
    assert {n: t.rows for n, t in result.tables.items()} == {
        "items": 1234,
        "tags": 2,
        "kv": 2,
        "plain": 2,
    }
    assert all(t.lost_ranges == () for t in result.tables.values())
    out = connect(str(tmp_path / "out.db"), key=db_key)
    try:
        names = {r[0] for r in out.execute("SELECT name FROM sqlite_schema")}
        assert {"items", "items_body", "tags", "kv", "plain", "v_items", "t_items"} <= names
        assert out.execute("SELECT rowid, a, b FROM plain ORDER BY rowid").fetchall() == [
            (7, "seven", b"\x00\xff"),
            (9, None, 3.5),
        ]
        assert out.execute("SELECT seq FROM sqlite_sequence WHERE name='tags'").fetchall() == [(2,)]
        assert [r[0] for r in out.execute("PRAGMA integrity_check")] == ["ok"]
    finally:
        out.close()


def test_salvage_reads_committed_frames_from_the_wal_without_touching_the_source(
    tmp_path: Path,
    db_key: DatabaseKey | None,
) -> None:
    src = tmp_path / "src.db"
    conn = connect(str(src), key=db_key)
    conn.execute("PRAGMA journal_mode=WAL").fetchall()
    conn.execute("PRAGMA wal_autocheckpoint=0").fetchall()
    conn.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT)")
    with conn:
        for i in range(100):
            conn.execute("INSERT INTO items(name) VALUES (?)", (f"n{i}",))
    # Copy the files as they are while open (committed data only in the WAL).
    frozen = tmp_path / "frozen.db"
    shutil.copyfile(src, frozen)
    shutil.copyfile(str(src) + "-wal", str(frozen) + "-wal")
    conn.close()
    before = (frozen.read_bytes(), Path(str(frozen) + "-wal").read_bytes())
    result = salvage(frozen, tmp_path / "out.db", key=db_key)
    assert result.tables["items"].rows == 100
    assert (frozen.read_bytes(), Path(str(frozen) + "-wal").read_bytes()) == before
    assert not Path(str(frozen) + "-shm").exists()


def test_salvage_goes_around_a_smashed_leaf_page(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    db = make_items_db(tmp_path / "bad.db", 5000, key=db_key)
    db.close()
    offset = leaf_page_offset(tmp_path / "bad.db", key=db_key)
    overwrite(tmp_path / "bad.db", offset, b"\xa5" * 4096)
    assert integrity(tmp_path / "bad.db", db_key) != ["ok"]
    result = salvage(tmp_path / "bad.db", tmp_path / "out.db", key=db_key)
    rows = result.tables["items"].rows
    # One page of ~5000/…-row leaves is lost; everything on both sides of it is kept.
    assert 4800 < rows < 5000
    assert result.tables["items"].lost_ranges
    out = connect(str(tmp_path / "out.db"), key=db_key)
    try:
        ids = [r[0] for r in out.execute("SELECT id FROM items ORDER BY id")]
    finally:
        out.close()
    assert ids[0] == 1
    assert ids[-1] == 5000


def test_salvage_keeps_rows_with_undecodable_text(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    path = tmp_path / "text.db"
    conn = connect(str(path), key=db_key)
    conn.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO notes VALUES (1, 'fine'), (2, CAST(x'fffe41' AS TEXT)), (3, 'ok')")
    conn.close()
    result = salvage(path, tmp_path / "out.db", key=db_key)
    assert result.tables["notes"].rows == 3


@pytest.mark.system_tool
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_salvage_beats_dump_on_the_benchmark_fixture(tmp_path: Path, seed: int) -> None:
    # Plaintext only: Debian's sqlite3 cannot read an encrypted file to compare with.
    if shutil.which("sqlite3") is None:
        pytest.skip("Debian's sqlite3 CLI is not installed (make test installs it)")
    bad = tmp_path / "bad.db"
    build_salvage_fixture(bad, seed)
    by_dump = dump_recovers(bad, tmp_path)
    result = salvage(bad, tmp_path / "out.db")
    assert result.total_rows >= by_dump
    assert result.total_rows >= 9_800
    assert count_items(tmp_path / "out.db") == result.total_rows


def test_salvage_refuses_to_overwrite(tmp_path: Path, db_key: DatabaseKey | None) -> None:
    db = make_items_db(tmp_path / "a.db", 1, key=db_key)
    db.close()
    (tmp_path / "out.db").write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        salvage(tmp_path / "a.db", tmp_path / "out.db", key=db_key)
    assert (tmp_path / "out.db").read_bytes() == b"keep"


def test_salvage_reads_past_a_smashed_file_header(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    db = make_items_db(tmp_path / "bad.db", 3000, key=db_key)
    db.close()
    overwrite(tmp_path / "bad.db", 0, b"\x5a" * 100)
    source_bytes = (tmp_path / "bad.db").read_bytes()
    result = salvage(tmp_path / "bad.db", tmp_path / "out.db", key=db_key)
    if db_key is not None:
        # An encrypted page 1 is authenticated whole: smashed, it is unreadable, the schema
        # with it, and SQL reads nothing (recovery puts the backup in place instead).
        assert result.total_rows == 0
        assert "schema unreadable" in result.schema_errors[0]
        assert (tmp_path / "bad.db").read_bytes() == source_bytes
        return
    assert result.tables["items"].rows == 3000
    assert "rebuilt" in result.schema_errors[0]
    assert (tmp_path / "bad.db").read_bytes() == source_bytes, "the source is never written"
    assert integrity(tmp_path / "out.db", db_key) == ["ok"]


def test_rows_under_a_smashed_root_page_go_to_lost_and_found(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    db = make_items_db(tmp_path / "bad.db", 20_000, key=db_key)
    db.close()
    conn = connect(str(tmp_path / "bad.db"), key=db_key)
    root = conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = 'items'").fetchall()[0][0]
    conn.close()
    overwrite(tmp_path / "bad.db", (root - 1) * 4096, b"\xa5" * 4096)
    result = salvage(tmp_path / "bad.db", tmp_path / "out.db", key=db_key)
    # No rowid is reachable through the b-tree any more; every leaf page is still on disk.
    assert result.tables["items"].rows == 0
    assert result.lost_and_found == 20_000
    out = connect(str(tmp_path / "out.db"), key=db_key)
    try:
        assert out.execute(
            "SELECT count(DISTINCT found_rowid), min(found_rowid), max(found_rowid) "
            "FROM lost_and_found WHERE table_guess = 'items' AND nfield = 3"
        ).fetchall() == [(20_000, 1, 20_000)]
        assert out.execute("SELECT c1 FROM lost_and_found WHERE found_rowid = 1234").fetchall() == [
            ("item-1233",)
        ]
    finally:
        out.close()
