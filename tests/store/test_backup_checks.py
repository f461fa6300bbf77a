"""A backup's own verification: each check catches the fault it is there for, plaintext and
encrypted (issue 19: the encrypted copy's check reads its pages from a memory map).

``create_backup`` copies a snapshot into a temp file, then checks that copy -- ``quick_check``
(every page, and for an encrypted copy every page's tag), page count and file size against the
source snapshot, schema fingerprint against the source -- and records its row counts. Here the
temp copy is damaged between the copy and the checks (the copy step is wrapped to do it), once
per check, and the backup must be refused with that check named, leaving no file behind.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import bastion.store.backup as backup_module
from bastion import _platform
from bastion.errors import BackupError, StoreError
from bastion.store import Database
from bastion.store._snapshot_facts import _open_ro, inspect_file, row_counts
from bastion.store.backup import create_backup
from bastion.store.crypt import DatabaseKey
from bastion.store.crypt.cipher import connect
from bastion.store.crypt.mapped import map_for_reads
from tests.store.opsfixtures import make_items_db, overwrite

pytestmark = pytest.mark.encrypted_rerun

ROWS = 2_000


def _table_leaf_offset(path: Path, key: DatabaseKey | None) -> tuple[int, int]:
    """(byte offset, page size) of a leaf page of the ``items`` *table* b-tree: a page only
    quick_check reads (count(*) reads the smallest index of items, not the table)."""
    conn = connect(str(path), key=key)
    try:
        pages = [
            int(r[0])
            for r in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = 'items' AND pagetype = 'leaf' "
                "ORDER BY pageno"
            )
        ]
        page_size = int(conn.execute("PRAGMA page_size").fetchall()[0][0])
        plan = " ".join(
            str(r[3]) for r in conn.execute("EXPLAIN QUERY PLAN SELECT count(*) FROM items")
        )
    finally:
        conn.close()
    assert "USING COVERING INDEX" in plan, plan  # the counts never read the table's pages
    return (pages[len(pages) // 2] - 1) * page_size, page_size


def _run_sql(path: Path, key: DatabaseKey | None, sql: str) -> None:
    conn = connect(str(path), key=key)
    try:
        conn.execute(sql)
    finally:
        conn.close()


def _damage_the_copy(monkeypatch: pytest.MonkeyPatch, damage: Callable[[Path], None]) -> list[Path]:
    """Wrap the copy step so that ``damage(temp copy)`` runs after it, before the checks.

    The hash that followed the copy is finished first and dropped: the backup then hashes
    the damaged file after the copy step, as it does for the backup API's copies, so that
    what refuses the copy is one of the checks (a hash that followed the copy would notice a
    longer file by itself, a check of its own)."""
    real = backup_module.take_copy
    seen: list[Path] = []

    def take_copy(db: Database, tmp: Path, **kwargs: Any) -> Any:
        copy = real(db, tmp, **kwargs)
        # The positional-I/O file copy where the platform has it, else SQLite's backup API
        # (BASTION_PORTABLE=1 runs that path here): every check must refuse its fault on both.
        assert copy.method == ("file" if _platform.FILE_COPY else "backup-api")
        if copy.hash is not None:
            copy.hash.result(tmp.stat().st_size)
        seen.append(tmp)
        damage(tmp)
        return dataclasses.replace(copy, hash=None)

    monkeypatch.setattr(backup_module, "take_copy", take_copy)
    return seen


def _refused(db: Database, backups: Path, seen: list[Path]) -> StoreError:
    with pytest.raises(StoreError) as caught:
        create_backup(db, backups)
    assert seen, "the copy step did not run"
    assert not seen[0].exists(), "the damaged temp copy was left behind"
    assert not backups.exists() or not list(backups.iterdir()), list(backups.iterdir())
    return caught.value


def _db(tmp_path: Path, key: DatabaseKey | None) -> Database:
    return make_items_db(tmp_path / "bastion.db", ROWS, key=key)


def test_a_damaged_page_only_quick_check_reads_is_refused(
    tmp_path: Path, db_key: DatabaseKey | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Garbage over the header of a table leaf page: plaintext, quick_check finds a page that
    is not a b-tree page; encrypted, the page's tag fails. The counts, schema and page count
    never read that page, so only quick_check can refuse this copy."""
    db = _db(tmp_path, db_key)
    try:
        offset, _page_size = _table_leaf_offset(db.path, db_key)

        def damage(tmp: Path) -> None:
            overwrite(tmp, offset, b"\xff" * 16)
            # Everything but quick_check reads the damaged copy without noticing.
            facts = inspect_file(tmp, quick_check=False, mmap=True, key=db_key)
            assert facts.row_counts == {"items": ROWS}

        seen = _damage_the_copy(monkeypatch, damage)
        err = _refused(db, tmp_path / "backups", seen)
    finally:
        db.close()
    assert "quick_check" in str(err) or "malformed" in str(err), err
    if isinstance(err, BackupError):
        assert err.details["problems"] == [p for p in err.details["problems"] if "quick_check" in p]


def _null_in_a_not_null_column(path: Path, key: DatabaseKey | None) -> None:
    """A NULL name in one row, the schema text restored to what it was: a well-formed file
    with the same schema, pages and counts, that quick_check reports (its NOT NULL scan)."""
    conn = connect(str(path), key=key)
    try:
        (sql,) = conn.execute("SELECT sql FROM sqlite_schema WHERE name = 'items'").fetchall()[0]
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute(
            "UPDATE sqlite_schema SET sql = ? WHERE name = 'items'",
            (str(sql).replace("NOT NULL ", ""),),
        )
    finally:
        conn.close()
    conn = connect(str(path), key=key)
    try:
        conn.execute("UPDATE items SET name = NULL WHERE id = 7")
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute("UPDATE sqlite_schema SET sql = ? WHERE name = 'items'", (sql,))
    finally:
        conn.close()


def test_a_row_quick_check_reports_is_refused_with_its_words(
    tmp_path: Path, db_key: DatabaseKey | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _db(tmp_path, db_key)
    try:
        seen = _damage_the_copy(monkeypatch, lambda tmp: _null_in_a_not_null_column(tmp, db_key))
        err = _refused(db, tmp_path / "backups", seen)
    finally:
        db.close()
    assert isinstance(err, BackupError), (err, err.details)
    assert err.details["problems"] == ["quick_check: NULL value in items.name"], err.details


def test_a_cut_short_copy_is_refused(
    tmp_path: Path, db_key: DatabaseKey | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy's last two pages cut off (its header still counts them): refused as damaged."""
    db = _db(tmp_path, db_key)
    try:
        seen = _damage_the_copy(
            monkeypatch, lambda tmp: _truncate(tmp, tmp.stat().st_size - 2 * _page(db))
        )
        err = _refused(db, tmp_path / "backups", seen)
    finally:
        db.close()
    assert "malformed" in str(err) or "file size" in str(err), err


def test_a_copy_with_trailing_bytes_is_refused_by_its_size(
    tmp_path: Path, db_key: DatabaseKey | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half a page more at the end: SQLite reads the pages its header counts and finds
    nothing wrong; the size against page count x page size does."""
    db = _db(tmp_path, db_key)
    try:
        half = _page(db) // 2
        seen = _damage_the_copy(
            monkeypatch, lambda tmp: overwrite(tmp, tmp.stat().st_size, b"\0" * half)
        )
        err = _refused(db, tmp_path / "backups", seen)
    finally:
        db.close()
    assert isinstance(err, BackupError), (err, err.details)
    assert [p for p in err.details["problems"] if p.startswith("file size")] == [
        p for p in err.details["problems"]
    ], err.details


def test_a_copy_with_another_schema_is_refused_by_its_fingerprint(
    tmp_path: Path, db_key: DatabaseKey | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A well-formed copy whose schema is not the source's: only the fingerprint says so
    (an index on a table this small fits in one new page, the page count check says so too)."""
    db = _db(tmp_path, db_key)
    try:
        seen = _damage_the_copy(
            monkeypatch, lambda tmp: _run_sql(tmp, db_key, "CREATE TABLE extra(x)")
        )
        err = _refused(db, tmp_path / "backups", seen)
    finally:
        db.close()
    assert isinstance(err, BackupError), (err, err.details)
    assert "schema fingerprint differs from the source snapshot" in err.details["problems"]


def test_a_copy_with_more_pages_is_refused_by_its_page_count(
    tmp_path: Path, db_key: DatabaseKey | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows added to the copy (well-formed, same schema): the page count differs from the
    source snapshot's, and nothing else is checked against the source."""
    db = _db(tmp_path, db_key)
    try:
        seen = _damage_the_copy(
            monkeypatch,
            lambda tmp: _run_sql(
                tmp,
                db_key,
                "INSERT INTO items(name, body) SELECT 'more-' || id, body FROM items",
            ),
        )
        err = _refused(db, tmp_path / "backups", seen)
    finally:
        db.close()
    assert isinstance(err, BackupError), (err, err.details)
    assert [p for p in err.details["problems"] if p.startswith("page count")], err.details


def test_the_row_counts_are_read_from_the_copy(
    tmp_path: Path, db_key: DatabaseKey | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows deleted in the copy (its pages stay, as free pages): every check against the
    source passes, and the manifest records the copy's counts, not the source's -- what a
    later deep verification compares the file with."""
    db = _db(tmp_path, db_key)
    try:
        _damage_the_copy(
            monkeypatch, lambda tmp: _run_sql(tmp, db_key, "DELETE FROM items WHERE id % 2 = 0")
        )
        result = create_backup(db, tmp_path / "backups")
    finally:
        db.close()
    assert result.manifest["row_counts"] == {"items": ROWS // 2}


def test_an_encrypted_copy_is_checked_through_a_memory_map(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    """The check of a backup's own copy (``mmap=True``) reads an encrypted file's pages from a
    mapping of it, as a plaintext file's (each page still decrypted and authenticated); a
    backup someone hands over (``mmap=False``) is read with a pread per page, as before."""
    db = _db(tmp_path, db_key)
    try:
        result = create_backup(db, tmp_path / "backups")
    finally:
        db.close()
    for mmap in (True, False):
        conn = _open_ro(result.path, mmap=mmap, key=db_key)
        try:
            assert row_counts(conn) == {"items": ROWS}
            if sys.platform.startswith("linux"):
                assert _mapped(result.path) is mmap
        finally:
            conn.close()
    assert not _mapped(result.path)
    facts = inspect_file(result.path, mmap=True, key=db_key)
    assert facts.ok
    assert facts.row_counts == {"items": ROWS}


def test_the_mapping_is_only_made_under_the_unix_vfs(tmp_path: Path) -> None:
    """map_for_reads calls the unix VFS's xFetch through the cipher's layer; under any other
    VFS (whose file object it cannot vouch for) it changes nothing and says so."""
    import apsw

    path = tmp_path / "x.db"
    conn = connect(str(path))
    conn.execute("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
    conn.close()

    class Shim(apsw.VFS):
        def __init__(self) -> None:
            super().__init__("bastion-test-shim", "")

    shim = Shim()
    try:
        other = connect(str(path), flags=apsw.SQLITE_OPEN_READONLY, vfs="bastion-test-shim")
        try:
            assert map_for_reads(other, path.stat().st_size) is False
            assert other.execute("SELECT x FROM t").fetchall() == [(1,)]
        finally:
            other.close()
    finally:
        shim.unregister()


def _mapped(path: Path) -> bool:
    with open("/proc/self/maps") as maps:
        return any(line.rstrip("\n").endswith(str(path)) for line in maps)


def _page(db: Database) -> int:
    return int(db.scalar("PRAGMA page_size"))


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(size)
