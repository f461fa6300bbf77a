"""Encryption at rest (issue 19 section 1): what lands on disk, and what a wrong key is.

Every file bastion writes for an encrypted database -- the database, its WAL, each backup
(all three copy methods), the quarantined copy and the salvaged one -- holds neither SQLite's
header string nor a row's value; the same steps on a plaintext database show both (so the
check can fail). A missing or wrong key is its own typed error (exit 79), never corruption:
the open-time check says ``KEY``, recovery refuses to act on it and nothing moves. A damaged
first page under the right key is damage, and recovery restores the backup.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import apsw
import pytest

from bastion import _platform
from bastion.app import Home
from bastion.config import StoreConfig, load_config
from bastion.errors import (
    DatabaseKeyMissing,
    DatabaseKeyWrong,
    DatabaseNotEncrypted,
    StoreError,
    StoreKeyError,
    exit_code_for,
)
from bastion.store import Database
from bastion.store.backup import create_backup, restore_backup, verify_backup
from bastion.store.crypt import DatabaseKey
from bastion.store.crypt.cipher import FileKind, connect, file_kind
from bastion.store.crypt.pages import (
    KeyVerdict,
    decrypt_page,
    key_verdict,
    page_authenticates,
    reseal_header,
)
from bastion.store.oneshot import query_one
from bastion.store.recovery import CheckKind, open_check, recover
from bastion.store.salvage import salvage
from tests.conftest import encrypted_store_env
from tests.store.opsfixtures import (
    add_items,
    assert_no_plaintext,
    count_items,
    integrity,
    leaf_page_offset,
    make_items_db,
    overwrite,
)

SENTINEL = b"sentinel-row-value-7f3a"


def _key() -> DatabaseKey:
    return DatabaseKey(os.urandom(32), source="the test")


def _with_sentinel(db: Database, rows: int = 50, start: int = 0) -> None:
    db.write(
        lambda tx: tx.executemany(
            "INSERT INTO items(name, body) VALUES (?, ?)",
            [
                (f"{SENTINEL.decode()}-{i}", SENTINEL.decode() * 3)
                for i in range(start, start + rows)
            ],
        )
    )


def _every_written_file(tmp_path: Path, key: DatabaseKey | None) -> list[Path]:
    """Build an ``items`` database with sentinel rows, leave committed frames in its WAL,
    back it up with each copy method, damage it, recover it; return every file written
    (the WAL as a copy taken while it held the frames: closing checkpoints it away)."""
    path = tmp_path / "bastion.db"
    db = make_items_db(path, 300, key=key)
    _with_sentinel(db)
    wal = Path(str(path) + "-wal")
    assert wal.stat().st_size > 0, "the WAL holds committed frames"
    wal_copy = tmp_path / "wal-as-it-was"
    wal_copy.write_bytes(wal.read_bytes())
    files = [path, wal_copy]
    backups = tmp_path / "backups"
    made = [create_backup(db, backups), create_backup(db, backups, vacuum=True)]
    # A reader pinning an older snapshot sends the copy through the backup API.
    reader = connect(str(path), flags=apsw.SQLITE_OPEN_READONLY, key=key)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM items").fetchall()
        _with_sentinel(db, 5, start=1000)
        made.append(create_backup(db, backups))
        reader.execute("COMMIT")
    finally:
        reader.close()
    # The first copy is the file copy where positional I/O exists; without it (Windows,
    # BASTION_PORTABLE=1) the backup API (docs/platforms.md).
    first = "file" if _platform.FILE_COPY else "backup-api"
    assert [m.manifest["method"] for m in made] == [first, "vacuum", "backup-api"]
    files += [m.path for m in made]
    db.close()
    overwrite(path, leaf_page_offset(path, key=key) + 8, os.urandom(64))
    check = open_check(path, StoreConfig(), key=key)
    assert check.kind is CheckKind.CORRUPT
    report = recover(
        path, backups_dir=backups, quarantine_root=tmp_path / "quarantine", check=check, key=key
    )
    assert report.placed == "backup"
    files += [p for p in report.quarantined if p.name.endswith(".db")]
    files.append(report.quarantine_dir / "salvaged.db")
    assert report.rows_salvaged["items"] > 0, "salvage read the encrypted file"
    files.append(path)  # the restored database
    return files


def test_database_wal_backups_quarantine_and_salvage_hold_no_plaintext(tmp_path: Path) -> None:
    key = _key()
    files = _every_written_file(tmp_path, key)
    for path in files:
        assert_no_plaintext(path, SENTINEL)
        if path.name != "wal-as-it-was":
            assert file_kind(path) is FileKind.ENCRYPTED, path
    assert count_items(tmp_path / "bastion.db", key) >= 350
    assert integrity(tmp_path / "bastion.db", key) == ["ok"]


def test_the_same_files_of_a_plaintext_database_show_both(tmp_path: Path) -> None:
    # The control: without a key the same steps leave the header and the values readable.
    for path in _every_written_file(tmp_path, None):
        data = path.read_bytes()
        if path.name == "wal-as-it-was":
            assert SENTINEL in data  # the WAL header is never SQLite's string; the rows are
            continue
        assert data.startswith(b"SQLite format 3"), path
        assert SENTINEL in data, path


def test_backups_are_rollback_journal_files_with_the_key_recorded(tmp_path: Path) -> None:
    key = _key()
    with make_items_db(tmp_path / "bastion.db", 100, key=key) as db:
        result = create_backup(db, tmp_path / "backups")
    # Bytes 16..23 of an encrypted page 1 stay readable: 1,1 = rollback journal, no WAL.
    assert result.path.read_bytes()[18:20] == b"\x01\x01"
    assert result.manifest["encryption"] == {"cipher": "aegis-256", "key_id": key.key_id}
    assert verify_backup(result.path, key=key).verified
    other = verify_backup(result.path, key=_key())
    assert not other.verified
    assert key.key_id in (other.problem or "")
    assert not verify_backup(result.path).verified  # no key: not verified, and says so
    assert count_items(result.path, key) == 100


def test_the_page_reader_agrees_with_the_driver(tmp_path: Path) -> None:
    key = _key()
    path = tmp_path / "bastion.db"
    with make_items_db(path, 800, key=key):
        pass
    data = path.read_bytes()
    page_size = 4096
    pages = [data[i : i + page_size] for i in range(0, len(data), page_size)]
    assert len(pages) > 5
    other = _key()
    for pgno, page in enumerate(pages, start=1):
        assert page_authenticates(key, page, pgno)
        assert not page_authenticates(other, page, pgno)
        assert not page_authenticates(key, page, pgno + 1), "the page number is bound in"
    assert (decrypt_page(key, pages[0], 1) or b"").startswith(b"SQLite format 3\x00")
    assert key_verdict(path, key) is KeyVerdict.RIGHT
    assert key_verdict(path, other) is KeyVerdict.WRONG
    # A header byte changed and sealed anew is read by the driver as written.
    sealed = reseal_header(key, pages[0], 18, b"\x01\x01")
    assert sealed is not None
    assert sealed[:16] == pages[0][:16]
    copy = tmp_path / "copy.db"
    copy.write_bytes(sealed + data[page_size:])
    assert count_items(copy, key) == 800
    assert reseal_header(other, pages[0], 18, b"\x01\x01") is None


def _refusals(tmp_path: Path) -> dict[str, tuple[Path, DatabaseKey | None, type[StoreKeyError]]]:
    key = _key()
    encrypted = tmp_path / "enc" / "bastion.db"
    encrypted.parent.mkdir()
    with make_items_db(encrypted, 200, key=key) as db:
        _with_sentinel(db)
    plain = tmp_path / "plain" / "bastion.db"
    plain.parent.mkdir()
    make_items_db(plain, 10).close()
    return {
        "wrong-key": (encrypted, _key(), DatabaseKeyWrong),
        "no-key": (encrypted, None, DatabaseKeyMissing),
        "plaintext-given-a-key": (plain, key, DatabaseNotEncrypted),
    }


@pytest.mark.parametrize("case", ["wrong-key", "no-key", "plaintext-given-a-key"])
def test_a_key_that_does_not_fit_is_its_own_error_never_corruption(
    tmp_path: Path, case: str
) -> None:
    path, key, error = _refusals(tmp_path)[case]
    before = {p.name: p.read_bytes() for p in path.parent.iterdir()}
    with pytest.raises(error) as raised:
        Database.open(path, key=key)
    assert exit_code_for(raised.value) == 79
    with pytest.raises(error):
        query_one(path, "SELECT count(*) FROM items", key=key)
    with pytest.raises(error):
        Database.open_readonly(path, key=key)
    check = open_check(path, StoreConfig(), key=key, full=True)
    assert check.kind is CheckKind.KEY, check.detail
    assert not check.ok
    assert not check.damaged
    assert isinstance(check.error(), error)
    # Recovery refuses to act on it: nothing is quarantined, restored or created.
    with pytest.raises(error):
        recover(
            path,
            backups_dir=tmp_path / "backups",
            quarantine_root=tmp_path / "quarantine",
            check=check,
            key=key,
        )
    assert not (tmp_path / "quarantine").exists()
    assert {p.name: p.read_bytes() for p in path.parent.iterdir()} == before


def test_a_home_set_to_recover_never_quarantines_for_a_wrong_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**encrypted_store_env(), "BASTION_STORE_ON_CORRUPT": "recover"}
    monkeypatch.setenv("BASTION_DB_KEY", base64.b64encode(os.urandom(32)).decode())
    cfg = load_config(tmp_path / "home", env=env)
    with Home.init(cfg) as home:
        home.settings.set("greeting", SENTINEL.decode())
        home.backup()
    before = cfg.db_path.read_bytes()
    monkeypatch.setenv("BASTION_DB_KEY", base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(DatabaseKeyWrong):
        Home.open(cfg)
    assert cfg.db_path.read_bytes() == before
    assert list(cfg.quarantine_dir.iterdir()) == []
    monkeypatch.delenv("BASTION_DB_KEY")
    with pytest.raises(DatabaseKeyMissing):
        Home.open(cfg)
    assert list(cfg.quarantine_dir.iterdir()) == []


def test_a_damaged_first_page_under_the_right_key_is_damage_and_recovers(tmp_path: Path) -> None:
    key = _key()
    path = tmp_path / "bastion.db"
    with make_items_db(path, 400, key=key) as db:
        create_backup(db, tmp_path / "backups")
        add_items(db, 400, 20)
    overwrite(path, 200, os.urandom(64))  # inside page 1's encrypted part: its tag fails
    with pytest.raises(StoreError) as raised:
        Database.open(path, key=key)
    assert not isinstance(raised.value, StoreKeyError), "other pages prove the key right"
    check = open_check(path, StoreConfig(), key=key)
    assert check.kind is CheckKind.CORRUPT
    assert check.damaged
    report = recover(
        path,
        backups_dir=tmp_path / "backups",
        quarantine_root=tmp_path / "quarantine",
        check=check,
        key=key,
    )
    assert report.placed == "backup"
    assert count_items(path, key) == 400


def test_restore_names_the_key_a_backup_needs(tmp_path: Path) -> None:
    key = _key()
    live = tmp_path / "bastion.db"
    with make_items_db(live, 30, key=key) as db:
        made = create_backup(db, tmp_path / "backups")
    before = live.read_bytes()
    other = _key()
    with pytest.raises(DatabaseKeyWrong) as wrong:
        restore_backup(made.path, live, tmp_path / "q", key=other)
    assert key.key_id in wrong.value.message
    assert other.key_id in wrong.value.message
    with pytest.raises(DatabaseKeyMissing):
        restore_backup(made.path, live, tmp_path / "q")
    assert live.read_bytes() == before
    plain = tmp_path / "plain" / "bastion.db"
    plain.parent.mkdir()
    with make_items_db(plain, 3) as db:
        plain_backup = create_backup(db, tmp_path / "plain-backups")
    with pytest.raises(DatabaseNotEncrypted):
        restore_backup(plain_backup.path, live, tmp_path / "q", key=key)
    assert live.read_bytes() == before
    restore_backup(made.path, live, tmp_path / "q", key=key)
    assert count_items(live, key) == 30


def test_salvage_of_an_encrypted_file_is_encrypted_with_its_salt(tmp_path: Path) -> None:
    key = _key()
    path = tmp_path / "bastion.db"
    with make_items_db(path, 2000, key=key):
        pass
    overwrite(path, leaf_page_offset(path, key=key) + 8, os.urandom(64))
    result = salvage(path, tmp_path / "salvaged.db", key=key)
    assert 1500 < result.total_rows < 2000
    out = tmp_path / "salvaged.db"
    assert out.read_bytes()[:16] == path.read_bytes()[:16], "same salt: same passphrase"
    assert_no_plaintext(out, b"item-1")
    assert count_items(out, key) == result.total_rows


def test_the_key_is_never_shown(tmp_path: Path) -> None:
    key = _key()
    forms = [key.raw.hex(), key.raw.hex().upper(), base64.b64encode(key.raw).decode()]
    texts = [repr(key), str(key), f"{key}", repr([key])]
    path = tmp_path / "bastion.db"
    with make_items_db(path, 20, key=key) as db:
        made = create_backup(db, tmp_path / "backups")
        texts.append(repr(db))
    texts.append(made.manifest_path.read_text())
    for case_key in (_key(), None):
        for attempt in (
            lambda k=case_key: Database.open(path, key=k),
            lambda k=case_key: restore_backup(made.path, path, tmp_path / "q", key=k),
        ):
            with pytest.raises(StoreKeyError) as raised:
                attempt()
            err = raised.value
            texts += [err.message, err.hint, json.dumps(err.details), str(err.to_dict())]
    joined = "\n".join(texts)
    for form in forms:
        assert form not in joined
    assert key.key_id in joined  # the fingerprint is what is shown


def test_key_values_are_checked() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        DatabaseKey(b"short")
    with pytest.raises(ValueError, match="16 bytes"):
        DatabaseKey(os.urandom(32), salt=b"x")
    raw = os.urandom(32)
    assert DatabaseKey(raw) == DatabaseKey(raw, source="elsewhere")
    assert DatabaseKey(raw).key_id == DatabaseKey(raw).key_id != _key().key_id


def test_checking_an_encrypted_backup_needs_memory_that_does_not_grow_with_it(
    tmp_path: Path,
) -> None:
    """A backup's check of an encrypted copy (each page decrypted on every read; the reads
    come from a memory map of the file, which is its page cache, not SQLite's memory) runs
    quick_check and the counts on two connections with a small page cache each, as a
    plaintext copy's does: the memory it needs does not grow with the file. (A
    page cache holding the whole file cost more CPU than decrypting the counted pages twice;
    bench/encryption.py has the backup's figures.)"""
    db = make_items_db(tmp_path / "big.db", rows=0, key=_key())
    try:
        db.write(
            lambda tx: tx.executemany(
                "INSERT INTO items(name, body) VALUES (?, ?)",
                [(f"item-{i}", os.urandom(500).hex()) for i in range(14_000)],
            )
        )
        apsw.memory_high_water(True)
        before = apsw.memory_used()
        result = create_backup(db, tmp_path / "backups")
        peak = apsw.memory_high_water(True) - before
    finally:
        db.close()
    size = result.path.stat().st_size
    assert size > 14 * 1024 * 1024  # a file several times what the two caches hold
    assert result.manifest["row_counts"] == {"items": 14_000}
    assert peak < 8 * 1024 * 1024, f"SQLite's memory grew by {peak} bytes for a {size}-byte file"
