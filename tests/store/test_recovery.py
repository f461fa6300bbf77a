"""Corruption drills: each kind of damage is detected at open, quarantined with all its files,
the newest good backup restored, and a report written with salvage counts."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import pytest

from bastion.app import Home
from bastion.config import Config, StoreConfig, load_config
from bastion.errors import (
    DatabaseKeyMissing,
    DatabaseNotEncrypted,
    NotADatabase,
    StoreCorrupt,
    StoreIOError,
    StoreKeyError,
    StoreMissing,
    StoreReadOnly,
)
from bastion.store import Database
from bastion.store._swap import replacement_path
from bastion.store.backup import create_backup
from bastion.store.crypt import DatabaseKey
from bastion.store.crypt.cipher import FileKind, classify, connect
from bastion.store.recovery import (
    CheckKind,
    OpenCheck,
    RecoveryReport,
    latest_salvage,
    merge_salvage,
    open_check,
    recover,
)
from tests.store.opsfixtures import (
    ITEMS_DDL,
    add_items,
    count_items,
    integrity,
    leaf_page_offset,
    overwrite,
)

# Every test that takes db_key runs twice: plaintext, then encrypted (tests/conftest.py).
pytestmark = pytest.mark.encrypted_rerun


def _config(tmp_path: Path, on_corrupt: str, store_env: dict[str, str]) -> Config:
    return load_config(tmp_path / "home", env={"BASTION_STORE_ON_CORRUPT": on_corrupt, **store_env})


def _home_with_backup(cfg: Config, backed_up: int = 400, after: int = 100) -> Path:
    """A home whose bastion.db has ``backed_up`` rows in a verified backup, then ``after``
    more rows written after the backup. Returns the backup's path."""
    with Home.init(cfg) as home:
        home.db.write(lambda tx: tx.script(ITEMS_DDL))
        add_items(home.db, 0, backed_up)
        result = home.backup()
        add_items(home.db, backed_up, after)
    return Path(result.path)


def _flip_leaf(path: Path, db_key: DatabaseKey | None = None) -> None:
    overwrite(path, leaf_page_offset(path, key=db_key) + 8, os.urandom(64))


def _smash_header(path: Path, db_key: DatabaseKey | None = None) -> None:
    overwrite(path, 0, os.urandom(100))


def _truncate_half(path: Path, db_key: DatabaseKey | None = None) -> None:
    os.truncate(path, (path.stat().st_size // 2 // 4096) * 4096)


def _truncate_zero(path: Path, db_key: DatabaseKey | None = None) -> None:
    os.truncate(path, 0)


def _delete(path: Path, db_key: DatabaseKey | None = None) -> None:
    path.unlink()


def _swap_non_sqlite(path: Path, db_key: DatabaseKey | None = None) -> None:
    path.write_text("# this is a config file someone copied over the database\n" * 100)


DAMAGE: dict[str, tuple[Callable[[Path, DatabaseKey | None], None], CheckKind]] = {
    "flipped-page": (_flip_leaf, CheckKind.CORRUPT),
    "smashed-header": (_smash_header, CheckKind.NOT_A_DATABASE),
    "truncated": (_truncate_half, CheckKind.TRUNCATED),
    "truncated-to-zero": (_truncate_zero, CheckKind.EMPTY),
    "deleted": (_delete, CheckKind.MISSING),
    "non-sqlite": (_swap_non_sqlite, CheckKind.NOT_A_DATABASE),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damage_is_detected_quarantined_and_the_backup_restored(
    tmp_path: Path, damage: str, db_key: DatabaseKey | None, store_env: dict[str, str]
) -> None:
    cfg = _config(tmp_path, "recover", store_env)
    backup = _home_with_backup(cfg)
    harm, kind = DAMAGE[damage]
    original = cfg.db_path.read_bytes()
    harm(cfg.db_path, db_key)
    check = open_check(
        cfg.db_path, cfg.store, backups_dir=cfg.backups_dir, db_name="bastion", key=db_key
    )
    assert check.kind is kind, check.detail
    assert not check.ok

    with Home.open(cfg) as home:
        report = home.recovery
        assert report is not None
        assert home.db.scalar("SELECT count(*) FROM items") == 400
        assert home.db.scalar("PRAGMA integrity_check") == "ok"
        kinds = [r[0] for r in home.db.query("SELECT kind FROM events ORDER BY id")]
        assert kinds[-2:] == ["store.quarantined", "store.restored"]
    assert report.restored_from == backup
    assert report.placed == "backup"
    qdir = report.quarantine_dir
    assert qdir.parent == cfg.quarantine_dir
    if damage != "deleted":
        assert (qdir / "bastion.db").exists(), "the damaged file is kept, never deleted"
    data = json.loads((qdir / "report.json").read_text())
    assert data["failed_check"]["kind"] == kind.value
    if damage in ("truncated-to-zero", "deleted"):
        # An emptied or deleted file holds nothing to salvage: no salvage is attempted.
        assert report.salvage is None
        assert data["salvage"] is None
        assert data["salvage_error"] is None
        assert not (qdir / "salvaged.db").exists()
    assert data["restored_from"] == str(backup)
    assert data["rows_in_backup"]["items"] == 400
    if damage == "smashed-header" and db_key is not None:
        # An encrypted page 1 is authenticated whole: smashed, the schema is unreadable and
        # salvage reads nothing; the backup is what comes back.
        assert data["rows_salvaged"] == {}
    elif damage == "smashed-header":
        # The b-tree pages are intact: salvage rebuilds the header and keeps every row.
        assert data["rows_salvaged"]["items"] == 500
        assert data["rows_only_in_salvage"]["items"] == 100
    if damage == "flipped-page":
        salvaged = data["rows_salvaged"]["items"]
        assert 400 < salvaged < 500, (
            "salvage keeps the rows newer than the backup around the bad page"
        )
        assert data["rows_only_in_salvage"]["items"] > 0
        assert (qdir / "salvaged.db").exists()
    del original


def test_deleted_wal_with_committed_frames_is_detected(
    tmp_path: Path, db_key: DatabaseKey | None, store_env: dict[str, str]
) -> None:
    cfg = _config(tmp_path, "recover", store_env)
    _home_with_backup(cfg)
    # A writer that dies without closing leaves its committed transactions in the WAL only.
    code = textwrap.dedent(
        f"""
        import base64, os
        from bastion.store import Database
        from bastion.store.crypt import DatabaseKey
        raw = os.environ.get("BASTION_DB_KEY")
        key = DatabaseKey(base64.b64decode(raw)) if raw else None
        db = Database.open({str(cfg.db_path)!r}, name="bastion", key=key)
        db.write(lambda tx: tx.executemany(
            "INSERT INTO items(name, body) VALUES (?, ?)",
            [("late-%d" % i, "x") for i in range(50)]))
        os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    wal = Path(str(cfg.db_path) + "-wal")
    assert wal.stat().st_size > 0
    wal.unlink()
    check = open_check(
        cfg.db_path, cfg.store, backups_dir=cfg.backups_dir, db_name="bastion", key=db_key
    )
    assert check.kind is CheckKind.WAL_LOST
    assert "committed frames" in check.detail

    with Home.open(cfg) as home:
        assert home.recovery is not None
        assert home.db.scalar("SELECT count(*) FROM items") == 400
    names = sorted(p.name for p in home.recovery.quarantine_dir.iterdir())
    assert "bastion.db" in names
    assert "bastion.db-shm" in names, "the -shm goes to quarantine with its database"


def test_a_corrupt_newest_backup_is_skipped_for_the_older_good_one(
    tmp_path: Path, db_key: DatabaseKey | None, store_env: dict[str, str]
) -> None:
    cfg = _config(tmp_path, "recover", store_env)
    good = _home_with_backup(cfg, backed_up=300, after=0)
    with Home.open(cfg) as home:
        add_items(home.db, 300, 50)
        newest = Path(home.backup().path)
    overwrite(newest, newest.stat().st_size - 3000, os.urandom(64))
    _flip_leaf(cfg.db_path, db_key)
    with Home.open(cfg) as home:
        assert home.recovery is not None
        assert home.recovery.restored_from == good
        assert home.db.scalar("SELECT count(*) FROM items") == 300


def test_refuse_mode_raises_naming_the_file_and_changes_nothing(
    tmp_path: Path, db_key: DatabaseKey | None, store_env: dict[str, str]
) -> None:
    cfg = _config(tmp_path, "refuse", store_env)
    _home_with_backup(cfg)
    _flip_leaf(cfg.db_path, db_key)
    before = cfg.db_path.read_bytes()
    with pytest.raises(StoreCorrupt) as caught:
        Home.open(cfg)
    assert str(cfg.db_path) in caught.value.message
    assert "quick_check" in caught.value.message
    assert caught.value.details["check"]["output"]
    assert cfg.db_path.read_bytes() == before
    assert list(cfg.quarantine_dir.iterdir()) == []


def test_refuse_mode_names_a_non_database(
    tmp_path: Path, db_key: DatabaseKey | None, store_env: dict[str, str]
) -> None:
    cfg = _config(tmp_path, "refuse", store_env)
    _home_with_backup(cfg)
    _swap_non_sqlite(cfg.db_path, db_key)
    with pytest.raises(NotADatabase, match="not an SQLite database"):
        Home.open(cfg)


def test_no_backup_puts_the_salvage_in_place(
    tmp_path: Path, db_key: DatabaseKey | None, store_env: dict[str, str]
) -> None:
    cfg = _config(tmp_path, "recover", store_env)
    with Home.init(cfg) as home:
        home.db.write(lambda tx: tx.script(ITEMS_DDL))
        add_items(home.db, 0, 3000)
    _flip_leaf(cfg.db_path, db_key)
    with Home.open(cfg) as home:
        assert home.recovery is not None
        assert home.recovery.placed == "salvage"
        rows = home.db.scalar("SELECT count(*) FROM items")
        assert 2800 < rows < 3000


def test_fresh_home_and_healthy_file_pass_the_check(
    tmp_path: Path, db_key: DatabaseKey | None, store_env: dict[str, str]
) -> None:
    cfg = _config(tmp_path, "refuse", store_env)
    new = open_check(cfg.db_path, cfg.store, key=db_key)
    assert new.kind is CheckKind.NEW
    _home_with_backup(cfg)
    ok = open_check(cfg.db_path, cfg.store, backups_dir=cfg.backups_dir, key=db_key)
    assert ok.kind is CheckKind.OK
    big = open_check(cfg.db_path, StoreConfig(open_check_max_bytes=0), key=db_key)
    assert big.kind is CheckKind.INCONCLUSIVE
    assert big.ok
    full = open_check(cfg.db_path, cfg.store, full=True, key=db_key)
    assert full.output == ("ok",)


def test_merge_from_salvage_inserts_missing_rows_and_reports_conflicts(
    tmp_path: Path, db_key: DatabaseKey | None, store_env: dict[str, str]
) -> None:
    cfg = _config(tmp_path, "refuse", store_env)
    _home_with_backup(cfg, backed_up=300, after=100)
    with Home.open(cfg) as home:
        home.db.write(lambda tx: tx.execute("UPDATE items SET body = 'edited' WHERE id = 5"))
    forced = OpenCheck(cfg.db_path, CheckKind.CORRUPT, "forced by the test", (), 0.0)
    report = recover(
        cfg.db_path,
        backups_dir=cfg.backups_dir,
        quarantine_root=cfg.quarantine_dir,
        check=forced,
        key=db_key,
    )
    assert report.rows_only_in_salvage["items"] == 100
    assert integrity(cfg.db_path, db_key) == ["ok"]
    with Home.open(cfg) as home:
        dry = merge_salvage(
            home.db, report.quarantine_dir / "salvaged.db", tables=["items"], dry_run=True
        )
        assert dry.inserted == {"items": 100}
        assert home.db.scalar("SELECT count(*) FROM items") == 300
        merged = merge_salvage(home.db, report.quarantine_dir / "salvaged.db", tables=["items"])
        assert merged.inserted == {"items": 100}
        assert merged.identical == {"items": 299}
        assert merged.conflicts == {"items": 1}
        assert merged.conflict_samples[0]["rowid"] == 5
        # What `bastion db recover --from-salvage --json` prints.
        assert merged.to_dict() == {
            "salvaged": str(report.quarantine_dir / "salvaged.db"),
            "inserted": {"items": 100},
            "identical": {"items": 299},
            "conflicts": {"items": 1},
            "conflict_samples": [
                {"table": "items", "rowid": 5, "reason": "rowid exists with other values"}
            ],
            "skipped_tables": {},
            "dry_run": False,
        }
        assert dry.to_dict()["dry_run"] is True
        assert home.db.scalar("SELECT body FROM items WHERE id = 5") != "edited"
        again = merge_salvage(home.db, report.quarantine_dir / "salvaged.db", tables=["items"])
        assert again.inserted == {"items": 0}
    assert count_items(cfg.db_path, db_key) == 400


def test_backup_of_a_recovered_home_still_works(
    tmp_path: Path, db_key: DatabaseKey | None, store_env: dict[str, str]
) -> None:
    cfg = _config(tmp_path, "recover", store_env)
    _home_with_backup(cfg)
    _flip_leaf(cfg.db_path, db_key)
    with Home.open(cfg) as home:
        result = create_backup(home.db, cfg.backups_dir)
    assert result.manifest["row_counts"]["items"] == 400


def _recover(
    cfg: Config, db_key: DatabaseKey | None, check: OpenCheck | None = None, **kwargs: object
) -> RecoveryReport:
    forced = OpenCheck(cfg.db_path, CheckKind.CORRUPT, "forced by the test", (), 0.0)
    return recover(
        cfg.db_path,
        backups_dir=cfg.backups_dir,
        quarantine_root=cfg.quarantine_dir,
        check=check or forced,
        key=db_key,
        **kwargs,  # type: ignore[arg-type]
    )


def test_with_no_backup_and_nothing_salvaged_an_empty_database_is_placed_only_when_allowed(
    tmp_path: Path, db_key: DatabaseKey | None, store_env: dict[str, str]
) -> None:
    cfg = _config(tmp_path, "refuse", store_env)
    with Home.init(cfg) as home:
        home.db.write(lambda tx: tx.script(ITEMS_DDL))
    _swap_non_sqlite(cfg.db_path)
    before = cfg.db_path.read_bytes()
    with pytest.raises(StoreMissing) as caught:
        _recover(cfg, db_key)
    message = caught.value.message
    assert message.startswith(
        f"bastion.db cannot be recovered: there is no verified backup of bastion in "
        f"{cfg.backups_dir} and nothing could be salvaged"
    )
    assert message.endswith(f"Nothing was moved or created: {cfg.db_path.parent} is as it was.")
    assert caught.value.hint == (
        "Put a copy of the database back in place yourself, or run `bastion db recover "
        "--allow-empty` to start with an empty database on purpose."
    )
    assert cfg.db_path.read_bytes() == before
    assert list(cfg.quarantine_dir.iterdir()) == []
    assert sorted(p.name for p in cfg.db_path.parent.iterdir() if p.name.startswith("bastion")) == [
        "bastion.db"
    ]

    report = _recover(cfg, db_key, allow_empty=True)
    assert report.placed == "empty"
    assert report.restored_from is None
    assert (report.quarantine_dir / "bastion.db").read_bytes() == before
    # A new, empty, private WAL database, encrypted with the key when there is one.
    assert stat.S_IMODE(cfg.db_path.stat().st_mode) == 0o600
    assert classify(cfg.db_path.read_bytes()[:100]) is (
        FileKind.PLAIN if db_key is None else FileKind.ENCRYPTED
    )
    assert integrity(cfg.db_path, db_key) == ["ok"]
    conn = connect(str(cfg.db_path), key=db_key)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchall() == [("wal",)]
        assert conn.execute("SELECT count(*) FROM sqlite_schema").fetchall() == [(0,)]
    finally:
        conn.close()
    data = json.loads(report.report_path.read_text())
    assert data["placed"] == "empty"
    assert data["rows_salvaged"] == {}


def test_the_latest_salvage_is_the_newest_salvaged_copy_of_that_database(
    tmp_path: Path, db_key: DatabaseKey | None, store_env: dict[str, str]
) -> None:
    cfg = _config(tmp_path, "refuse", store_env)
    assert latest_salvage(cfg.quarantine_dir, "bastion") is None  # no quarantine yet
    _home_with_backup(cfg, backed_up=20, after=5)
    first = _recover(cfg, db_key, now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    with Home.open(cfg) as home:
        add_items(home.db, 1000, 5)
    second = _recover(cfg, db_key, now=dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
    assert latest_salvage(cfg.quarantine_dir, "bastion") == second.quarantine_dir / "salvaged.db"
    assert latest_salvage(cfg.quarantine_dir, "other") is None
    # A newer quarantine of another database, and newer folders without a readable report or
    # without a salvaged copy, are passed over.
    root = cfg.quarantine_dir
    for stamp, files in {
        "20260103T000000_000000Z": {"salvaged.db": "x", "report.json": '{"db": "/x/other.db"}'},
        "20260104T000000_000000Z": {"salvaged.db": "x", "report.json": "{not json"},
        "20260105T000000_000000Z": {"salvaged.db": "x"},
        "20260106T000000_000000Z": {"report.json": json.dumps({"db": str(cfg.db_path)})},
    }.items():
        (root / stamp).mkdir()
        for name, text in files.items():
            (root / stamp / name).write_text(text)
    assert latest_salvage(root, "bastion") == second.quarantine_dir / "salvaged.db"
    assert latest_salvage(root, "other") == root / "20260103T000000_000000Z" / "salvaged.db"
    assert first.quarantine_dir < second.quarantine_dir


# --- merging salvaged rows back: every table shape ----------------------------------------

#: Tables of every shape merge_salvage meets: an INTEGER PRIMARY KEY (the rowid's alias), no
#: declared key, a TEXT key, a composite key, quoted names, a WITHOUT ROWID table, and an FTS5
#: index over an external content table (kept up to date by a trigger).
_SHAPES_DDL = """
CREATE TABLE docs(id INTEGER PRIMARY KEY, body TEXT);
CREATE VIRTUAL TABLE docs_fts USING fts5(body, content='docs', content_rowid='id');
CREATE TRIGGER docs_ai AFTER INSERT ON docs BEGIN
  INSERT INTO docs_fts(rowid, body) VALUES (new.id, new.body);
END;
CREATE TABLE plain(n INTEGER);
CREATE TABLE tagged(name TEXT PRIMARY KEY, v INTEGER);
CREATE TABLE pair(a INTEGER, b INTEGER, v TEXT, PRIMARY KEY (a, b));
CREATE TABLE "we""ird"("co""l" TEXT);
CREATE TABLE kv(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
"""


def _shapes(path: Path, rows: dict[str, list[tuple[object, ...]]], extra: str = "") -> None:
    """A database of _SHAPES_DDL (and ``extra``) holding ``rows``: per table, tuples of
    (rowid, *every column), inserted under that rowid."""
    conn = connect(str(path))
    try:
        conn.execute(_SHAPES_DDL + extra)
        for table, values in rows.items():
            q = '"' + table.replace('"', '""') + '"'
            names = [
                '"' + str(r[1]).replace('"', '""') + '"'
                for r in conn.execute(f"PRAGMA table_info({q})")
            ]
            for row in values:  # (a WITHOUT ROWID table's rows have no rowid)
                cols = ", ".join(names if len(row) == len(names) else ["rowid", *names])
                marks = ", ".join("?" for _ in row)
                conn.execute(f"INSERT INTO {q} ({cols}) VALUES ({marks})", row)
    finally:
        conn.close()


def _rows(db_path: Path, table: str) -> list[tuple[object, ...]]:
    conn = connect(str(db_path))
    try:
        q = '"' + table.replace('"', '""') + '"'
        return [tuple(r) for r in conn.execute(f"SELECT rowid, * FROM {q} ORDER BY rowid")]
    finally:
        conn.close()


@pytest.mark.plaintext_only(reason="the table shapes are the point; the key is tested above")
def test_merge_keeps_each_rowid_skips_what_it_cannot_merge_and_reports_every_conflict(
    tmp_path: Path,
) -> None:
    """Every salvaged row the live table lacks comes back under its own rowid (what other
    rows and the FTS index refer to by), in every table shape; identical rows are counted;
    a rowid taken by other values and a unique key taken are conflicts, each sampled with
    its reason, counted over every batch; tables that cannot be merged are named with why."""
    live, salvaged = tmp_path / "live.db", tmp_path / "salvaged.db"
    taken: list[tuple[object, ...]] = [(i, f"live-{i}") for i in range(1, 102)]
    _shapes(
        live,
        {
            "docs": [(1, 1, "alpha")],
            "plain": [(1, 10), (2, 20)],
            "tagged": [(1, "a", 1), (2, "z", 26)],
            "pair": [(1, 1, 1, "x"), (2, 2, 2, "y")],
            'we"ird': [(1, "q")],
            "kv": [("k1", 1)],
            "zlog": taken,
        },
        extra="CREATE TABLE legacy(id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE zlog(m TEXT);",
    )
    _shapes(
        salvaged,
        {
            "docs": [(1, 1, "alpha"), (7, 7, "bravo"), (40, 40, "charlie")],
            "plain": [(1, 10), (2, 20), (5, 50), (90, 900)],
            # "a" and "z" were renamed away and back since: their keys are taken.
            "tagged": [
                (6, "b", 2),
                (30, "c", 3),
                (31, "a", 9),
                (33, "z", 0),
            ],
            "pair": [(1, 1, 1, "x2"), (2, 2, 2, "y2"), (8, 8, 1, "p"), (60, 60, 2, "q")],
            'we"ird': [(1, "q"), (4, "r")],
            "kv": [("k1", 1), ("k2", 2)],
            "legacy": [(3, "old-3"), (50, "old-50")],
            "gone": [(1, "x")],
            "zlog": [(i, f"salvaged-{i}") for i, _ in taken],
        },
        # The live table gained an INTEGER PRIMARY KEY since (a rebuilt table): its rows keep
        # their rowid, which is the new key. A table dropped since is not recreated.
        extra="CREATE TABLE legacy(v TEXT); CREATE TABLE gone(x); CREATE TABLE zlog(m TEXT);",
    )
    with Database.open(live) as db:
        report = merge_salvage(db, salvaged, batch=60)

    assert report.inserted == {
        "docs": 2,
        "legacy": 2,
        "pair": 2,
        "plain": 2,
        "tagged": 2,
        'we"ird': 1,
        "zlog": 0,
    }
    assert report.identical == {
        "docs": 1,
        "legacy": 0,
        "pair": 0,
        "plain": 2,
        "tagged": 0,
        'we"ird': 1,
        "zlog": 0,
    }
    assert report.conflicts == {
        "docs": 0,
        "legacy": 0,
        "pair": 2,
        "plain": 0,
        "tagged": 2,
        'we"ird': 0,
        "zlog": 101,
    }
    storage = "a virtual table's storage (rebuilt from its content)"
    assert report.skipped_tables == {
        "docs_fts": storage,
        "docs_fts_config": storage,
        "docs_fts_data": storage,
        "docs_fts_docsize": storage,
        "docs_fts_idx": storage,
        "gone": "not in the live database",
        "kv": "WITHOUT ROWID tables are not merged",
    }
    other = "rowid exists with other values"
    unique = "UNIQUE constraint failed: tagged.name"
    # At most 100 samples, in the order met; every conflict is counted.
    assert list(report.conflict_samples) == [
        {"table": "pair", "rowid": 1, "reason": other},
        {"table": "pair", "rowid": 2, "reason": other},
        {"table": "tagged", "rowid": 31, "reason": unique},
        {"table": "tagged", "rowid": 33, "reason": unique},
        *({"table": "zlog", "rowid": i, "reason": other} for i in range(1, 97)),
    ]

    assert _rows(live, "docs") == [(1, 1, "alpha"), (7, 7, "bravo"), (40, 40, "charlie")]
    assert _rows(live, "plain") == [(1, 10), (2, 20), (5, 50), (90, 900)]
    assert _rows(live, "tagged") == [(1, "a", 1), (2, "z", 26), (6, "b", 2), (30, "c", 3)]
    assert _rows(live, "pair") == [(1, 1, 1, "x"), (2, 2, 2, "y"), (8, 8, 1, "p"), (60, 60, 2, "q")]
    assert _rows(live, 'we"ird') == [(1, "q"), (4, "r")]
    assert _rows(live, "legacy") == [(3, 3, "old-3"), (50, 50, "old-50")]
    assert _rows(live, "zlog") == [(i, m) for i, m in taken]
    conn = connect(str(live))
    try:  # the index found the merged rows through its trigger, and is sound
        assert conn.execute("SELECT * FROM kv").fetchall() == [("k1", 1)]
        found = conn.execute("SELECT rowid FROM docs_fts WHERE docs_fts MATCH 'bravo'").fetchall()
        assert found == [(7,)]
        conn.execute("INSERT INTO docs_fts(docs_fts) VALUES ('integrity-check')")
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()

    # Merged once, the rows are there under the same rowids: a second merge adds nothing.
    with Database.open(live) as db:
        again = merge_salvage(db, salvaged)
    assert set(again.inserted.values()) == {0}
    assert again.identical["plain"] == 4
    assert again.identical["legacy"] == 2


# --- what a recovery says it did ----------------------------------------------------------

_STAMP = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
_NEXT_STEPS = (
    "Rows only in the salvaged copy can be merged back with `bastion db recover "
    "--from-salvage` (conflicts are reported, never overwritten)."
)


def _other_database_backup(tmp_path: Path, backups_dir: Path, key: DatabaseKey | None) -> Path:
    """A newer backup, in the same folder, of another database of the home."""
    with Database.open(tmp_path / "other.db", name="other", key=key) as other:
        other.write(lambda tx: tx.script(ITEMS_DDL))
        add_items(other, 0, 3)
        return Path(create_backup(other, backups_dir).path)


def _events() -> tuple[list[tuple[str, str, dict[str, object]]], Callable[..., None]]:
    events: list[tuple[str, str, dict[str, object]]] = []
    return events, lambda kind, name, data: events.append((kind, name, dict(data)))


def test_a_recovery_reports_every_file_it_moved_and_what_it_placed(
    tmp_path: Path, db_key: DatabaseKey | None, store_env: dict[str, str]
) -> None:
    """The report (returned, in report.json, and as events) names the quarantine folder,
    every file moved into it (the -wal and -shm too), the backup of *this* database that
    was restored (not a newer one of another database), the salvage, when it was made and
    what to do next; a replacement left by a recovery that was killed is cleared first."""
    cfg = _config(tmp_path, "refuse", store_env)
    backup = _home_with_backup(cfg, backed_up=20, after=5)
    _other_database_backup(tmp_path, cfg.backups_dir, db_key)
    _flip_leaf(cfg.db_path, db_key)
    conn = connect(str(cfg.db_path), key=db_key)  # leaves a -wal and a -shm beside it
    conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
    conn.execute("PRAGMA journal_mode").fetchall()
    conn.close()
    left = replacement_path(cfg.db_path, "recover")
    left.write_bytes(b"half a replacement, left by a recovery killed with -9")
    check = open_check(cfg.db_path, cfg.store, backups_dir=cfg.backups_dir, key=db_key)
    assert check.kind is CheckKind.CORRUPT
    events, sink = _events()

    report = _recover(cfg, db_key, check=check, now=_STAMP, on_event=sink, db_name="bastion")

    qdir = cfg.quarantine_dir / "20300102T030405_000000Z"
    assert report.quarantine_dir == qdir
    assert report.placed == "backup"
    assert report.restored_from == backup
    names = ("bastion.db-wal", "bastion.db-shm", "bastion.db")
    assert report.quarantined == tuple(qdir / n for n in names)
    assert all((qdir / n).exists() for n in names)
    assert not left.exists()
    assert count_items(cfg.db_path, db_key) == 20
    assert report.salvage is not None
    assert report.salvage.dest == qdir / "salvaged.db"
    assert report.rows_salvaged == {n: t.rows for n, t in report.salvage.tables.items()}

    data = json.loads((qdir / "report.json").read_text())
    created = dt.datetime.fromisoformat(data.pop("created_at"))
    assert created.utcoffset() == dt.timedelta(0)
    assert data == {
        **json.loads(json.dumps(report.to_dict())),
        "salvage_error": None,
        "next_steps": _NEXT_STEPS,
    }
    assert data["db"] == str(cfg.db_path)
    assert data["quarantine_dir"] == str(qdir)
    assert data["quarantined"] == [str(qdir / n) for n in names]
    assert data["restored_from"] == str(backup)
    assert data["salvage"]["dest"] == str(qdir / "salvaged.db")
    assert data["report"] == str(qdir / "report.json")
    assert events == [
        (
            "store.quarantined",
            "bastion",
            {"reason": check.detail, "kind": "corrupt", "dir": str(qdir)},
        ),
        (
            "store.restored",
            "bastion",
            {"placed": "backup", "backup": str(backup), "report": str(qdir / "report.json")},
        ),
    ]


@pytest.mark.plaintext_only(reason="an encrypted page 1 smashed loses every row to salvage")
def test_without_a_backup_a_single_salvaged_row_is_put_in_place(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "refuse", {})
    cfg.quarantine_dir.mkdir(parents=True)
    with Database.open(cfg.db_path, name="bastion") as db:
        db.write(lambda tx: tx.script(ITEMS_DDL))
        add_items(db, 0, 1)
    _smash_header(cfg.db_path)
    check = open_check(cfg.db_path, cfg.store, backups_dir=cfg.backups_dir)
    assert check.kind is CheckKind.NOT_A_DATABASE
    events, sink = _events()

    report = _recover(cfg, None, check=check, on_event=sink)

    assert report.placed == "salvage"
    assert report.restored_from is None
    assert count_items(cfg.db_path) == 1
    data = json.loads(report.report_path.read_text())
    assert data["restored_from"] is None
    assert data["placed"] == "salvage"
    assert events[1] == (
        "store.restored",
        "bastion",
        {"placed": "salvage", "backup": None, "report": str(report.report_path)},
    )


def test_a_missing_database_without_its_own_backup_is_refused_by_name(
    tmp_path: Path, db_key: DatabaseKey | None, store_env: dict[str, str]
) -> None:
    """Another database's backups are no backup of this one: a missing file with none of its
    own is new to the check (nothing says it existed), and recovery of it is refused,
    naming the file as missing."""
    cfg = _config(tmp_path, "refuse", store_env)
    cfg.quarantine_dir.mkdir(parents=True)
    _other_database_backup(tmp_path, cfg.backups_dir, db_key)
    path = tmp_path / "app.db"
    check = open_check(path, cfg.store, backups_dir=cfg.backups_dir, key=db_key)
    assert check.kind is CheckKind.NEW
    lost = open_check(path, cfg.store, backups_dir=cfg.backups_dir, expected=True, key=db_key)
    assert lost.kind is CheckKind.MISSING

    with pytest.raises(StoreMissing) as caught:
        recover(
            path,
            backups_dir=cfg.backups_dir,
            quarantine_root=cfg.quarantine_dir,
            check=lost,
            key=db_key,
        )
    assert caught.value.message == (
        f"app.db is missing and cannot be recovered: there is no verified backup of app in "
        f"{cfg.backups_dir} and nothing could be salvaged. Nothing was moved or created: "
        f"{tmp_path} is as it was."
    )
    assert caught.value.details["path"] == str(path)
    assert not path.exists()
    assert list(cfg.quarantine_dir.iterdir()) == []


# --- what a failed check says -------------------------------------------------------------

_ERRORS = {
    CheckKind.NOT_A_DATABASE: NotADatabase,
    CheckKind.MISSING: StoreMissing,
    CheckKind.EMPTY: StoreCorrupt,
    CheckKind.TRUNCATED: StoreCorrupt,
    CheckKind.WAL_LOST: StoreCorrupt,
    CheckKind.CORRUPT: StoreCorrupt,
}


@pytest.mark.plaintext_only(reason="the check's data, whatever file it was made of")
@pytest.mark.parametrize("kind", list(_ERRORS), ids=[k.value for k in _ERRORS])
@pytest.mark.parametrize("refused", [False, True], ids=["", "disk-refused"])
def test_a_failed_check_is_raised_typed_naming_the_file_with_the_check(
    tmp_path: Path, kind: CheckKind, refused: bool
) -> None:
    """What refuse mode raises (and `bastion db check --json` prints as the check): the
    error of the kind of damage, naming the file, carrying the whole check. Damage found by
    the read-only re-check after the disk refused a normal open is still damage: the error
    is the damage's, the disk's condition rides along as the check's fault."""
    path = tmp_path / "app.db"
    fault = StoreReadOnly(f"{tmp_path} is on a read-only filesystem (test)") if refused else None
    check = OpenCheck(path, kind, "what the check found", ("row 1", "row 2"), 1.23456, fault)

    assert check.to_dict() == {
        "path": str(path),
        "kind": kind.value,
        "ok": False,
        "damaged": True,
        "index_only": False,
        "detail": "what the check found",
        "output": ["row 1", "row 2"],
        "duration_s": 1.235,
        "fault": None if fault is None else fault.to_dict(),
    }
    error = check.error()
    assert type(error) is _ERRORS[kind]
    assert error.message == (
        f"{path} failed the open-time check ({kind.value}): what the check found"
    )
    assert error.details == {"path": str(path), "check": check.to_dict()}


def test_a_salvage_that_cannot_run_is_reported_and_the_backup_restored_all_the_same(
    tmp_path: Path, db_key: DatabaseKey | None, store_env: dict[str, str]
) -> None:
    """Salvage only ever writes a new file: a salvaged.db already in the quarantine folder
    (an earlier recovery at the same stamp) is kept as it was, the salvage's refusal is the
    report's salvage_error, and the newest good backup is restored all the same."""
    cfg = _config(tmp_path, "refuse", store_env)
    backup = _home_with_backup(cfg, backed_up=20, after=5)
    _flip_leaf(cfg.db_path, db_key)
    qdir = cfg.quarantine_dir / "20300102T030405_000000Z"
    qdir.mkdir(parents=True)
    (qdir / "salvaged.db").write_bytes(b"an earlier salvage")

    report = _recover(cfg, db_key, now=_STAMP)

    assert report.placed == "backup"
    assert report.restored_from == backup
    assert report.salvage is None
    assert count_items(cfg.db_path, db_key) == 20
    data = json.loads(report.report_path.read_text())
    assert data["salvage_error"] == f"{qdir / 'salvaged.db'} exists; salvage writes a new file"
    assert data["rows_salvaged"] == {}
    assert (qdir / "salvaged.db").read_bytes() == b"an earlier salvage"


# --- what the check says of each shape of file --------------------------------------------


def _small_db(path: Path, page_size: int = 4096) -> None:
    """A closed WAL database (no -wal, no -shm) of a few pages."""
    conn = connect(str(path))
    try:
        conn.execute(f"PRAGMA page_size = {page_size}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE t(x)")
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40) "
            "INSERT INTO t SELECT randomblob(300) FROM n"
        )
    finally:
        conn.close()


def _frames_in_wal(path: Path) -> int:
    """A database whose newest transactions are committed in its -wal only (a writer that
    died): the number of frames the -wal holds."""
    _small_db(path)
    conn = connect(str(path))
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20) "
        "INSERT INTO t SELECT randomblob(300) FROM n"
    )
    conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
    conn.close()
    return (Path(f"{path}-wal").stat().st_size - 32) // (4096 + 24)


def _timed_check(path: Path, config: StoreConfig, **kwargs: Any) -> OpenCheck:
    """open_check, with what every check says of itself: its file, and how long it took
    (within the call's own time), as JSON-ready data."""
    started = time.monotonic()
    check = open_check(path, config, **kwargs)
    took = time.monotonic() - started
    assert check.path == path
    assert 0 <= check.duration_s <= took
    assert json.loads(json.dumps(check.to_dict()))["kind"] == check.kind.value
    return check


def _shape(tmp_path: Path, shape: str) -> tuple[Path, dict[str, Any], CheckKind, str]:
    """Make ``shape`` at tmp_path/app.db: (path, open_check's arguments, kind, detail)."""
    path = tmp_path / "app.db"
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    args: dict[str, Any] = {}
    gone = f"{path} is missing, but its -wal/-shm or backups exist: it was deleted"
    if shape == "new":
        return path, args, CheckKind.NEW, "no database yet"
    if shape == "missing-beside-its-wal":
        wal.write_bytes(b"")
        return path, args, CheckKind.MISSING, gone
    if shape == "missing-beside-its-shm":
        shm.write_bytes(b"")
        return path, args, CheckKind.MISSING, gone
    if shape == "missing-with-backups-under-its-name":  # (a name that is not the file's)
        backups = tmp_path / "backups"
        with Database.open(tmp_path / "kept.db", name="bastion") as db:
            create_backup(db, backups)
        return path, {"backups_dir": backups, "db_name": "bastion"}, CheckKind.MISSING, gone
    if shape == "missing-that-the-home-held":
        detail = f"{path} is missing, but this home has held it: it was deleted or moved"
        return path, {"expected": True}, CheckKind.MISSING, detail
    if shape in ("emptied-beside-a-wal-with-bytes", "emptied-that-the-home-held"):
        path.write_bytes(b"")
        if shape == "emptied-beside-a-wal-with-bytes":
            wal.write_bytes(b"\x00")
        else:
            args["expected"] = True
        return path, args, CheckKind.EMPTY, f"{path} was truncated to 0 bytes"
    if shape == "empty-beside-another-databases-backups":
        backups = tmp_path / "backups"
        with Database.open(tmp_path / "other.db", name="other") as db:
            create_backup(db, backups)
        path.write_bytes(b"")
        return path, {"backups_dir": backups}, CheckKind.NEW, "empty file: a new database"
    if shape == "empty-beside-an-empty-wal":
        path.write_bytes(b"")
        wal.write_bytes(b"")
        return path, args, CheckKind.NEW, "empty file: a new database"
    if shape == "not-sqlite":
        path.write_text("# a config file copied over the database\n" * 100)
        detail = f"{path} is not an SQLite database (header {b'# a config file '!r})"
        return path, args, CheckKind.NOT_A_DATABASE, detail
    if shape == "cut-mid-page":
        _small_db(path)
        os.truncate(path, path.stat().st_size - 100)
        size = path.stat().st_size
        detail = f"{path} is {size} bytes, not a whole number of 4096-byte pages"
        return path, args, CheckKind.TRUNCATED, detail
    if shape in ("64k-pages-a-page-cut-off", "page-count-bit-flipped"):
        page = 65536 if shape.startswith("64k") else 4096
        _small_db(path, page_size=page)
        pages = path.stat().st_size // page
        if shape.startswith("64k"):
            os.truncate(path, (pages - 1) * page)
        else:  # the page count's high byte: 2**24 pages more than the file has
            overwrite(path, 28, b"\x01")
            pages += 2**24
        size = path.stat().st_size
        detail = (
            f"{path} is truncated: header declares {pages} pages ({pages * page} bytes), "
            f"file has {size}"
        )
        return path, args, CheckKind.TRUNCATED, detail
    if shape == "page-1-b-tree-smashed":  # the header is sound, the schema's page is not
        _small_db(path)
        overwrite(path, 100, b"\xff" * 8)
        detail = "quick_check could not run: database disk image is malformed"
        return path, args, CheckKind.CORRUPT, detail
    if shape == "an-empty-wal-beside":  # what a reader that did not write leaves
        _small_db(path)
        wal.write_bytes(b"")
        return path, args, CheckKind.OK, "quick_check ok"
    if shape == "a-cut-shm-beside":  # what a failed open on a full disk leaves
        _small_db(path)
        shm.write_bytes(b"\x00\x00\x00")
        return path, args, CheckKind.OK, "quick_check ok"
    if shape == "an-unreadable-shm-beside":  # no wal-index to read: no frames it records
        _small_db(path)
        shm.mkdir()
        return path, args, CheckKind.OK, "quick_check ok"
    if shape == "wal-cut-short":
        frames = _frames_in_wal(path)
        os.truncate(wal, 4096)
        detail = (
            f"{path}-wal is 4096 bytes but {frames} committed frames need "
            f"{32 + frames * (4096 + 24)}: it was truncated"
        )
        return path, args, CheckKind.WAL_LOST, detail
    if shape == "wal-deleted":
        frames = _frames_in_wal(path)
        wal.unlink()
        detail = (
            f"{path}-wal was removed while the database was closed: the wal-index records "
            f"{frames} committed frames that are gone"
        )
        return path, args, CheckKind.WAL_LOST, detail
    if shape == "at-the-size-limit":
        _small_db(path)
        args["config"] = StoreConfig(open_check_max_bytes=path.stat().st_size)
        return path, args, CheckKind.OK, "quick_check ok"
    if shape == "over-the-size-limit":
        _small_db(path)
        size = path.stat().st_size
        args["config"] = StoreConfig(open_check_max_bytes=size - 1)
        detail = f"quick_check skipped: {size} bytes is over open_check_max_bytes ({size - 1})"
        return path, args, CheckKind.INCONCLUSIVE, detail
    if shape == "checked-in-full":
        _small_db(path)
        return path, {"full": True}, CheckKind.OK, "integrity_check ok"
    raise AssertionError(shape)


_SHAPES = [
    "new",
    "missing-beside-its-wal",
    "missing-beside-its-shm",
    "missing-with-backups-under-its-name",
    "missing-that-the-home-held",
    "emptied-beside-a-wal-with-bytes",
    "emptied-that-the-home-held",
    "empty-beside-an-empty-wal",
    "empty-beside-another-databases-backups",
    "not-sqlite",
    "cut-mid-page",
    "64k-pages-a-page-cut-off",
    "page-count-bit-flipped",
    "page-1-b-tree-smashed",
    "an-empty-wal-beside",
    "a-cut-shm-beside",
    "an-unreadable-shm-beside",
    "wal-cut-short",
    "wal-deleted",
    "at-the-size-limit",
    "over-the-size-limit",
    "checked-in-full",
]


@pytest.mark.plaintext_only(reason="the shapes of a file; the key's refusals are tested apart")
@pytest.mark.parametrize("shape", _SHAPES)
def test_each_shape_of_file_gets_its_kind_and_says_why(tmp_path: Path, shape: str) -> None:
    path, args, kind, detail = _shape(tmp_path, shape)
    config = args.pop("config", StoreConfig())
    check = _timed_check(path, config, **args)
    assert (check.kind, check.detail) == (kind, detail)
    # What the check printed: quick_check's own rows, SQLite's error when it could not run.
    output = {CheckKind.OK: ("ok",), CheckKind.CORRUPT: (detail.split(": ", 1)[-1],)}
    assert check.output == output.get(kind, ())


@pytest.mark.plaintext_only(reason="the file's own condition, whatever its content")
def test_a_directory_in_place_of_the_database_is_an_io_condition(tmp_path: Path) -> None:
    """Not damage (nothing was read) and not a new database: the disk's answer, named."""
    path = tmp_path / "app.db"
    path.mkdir()
    check = _timed_check(path, StoreConfig())
    assert check.kind is CheckKind.IO_ERROR
    assert isinstance(check.fault, StoreIOError)
    assert (
        check.detail
        == check.fault.message
        == (
            f"cannot open {path}: it is a directory, not a database file (while checking it: "
            "Is a directory)"
        )
    )
    assert check.fault.details == {"path": str(path), "errno": errno.EISDIR}
    assert check.error() is check.fault
    with pytest.raises(StoreIOError):
        recover(path, backups_dir=tmp_path / "b", quarantine_root=tmp_path / "q", check=check)
    assert not (tmp_path / "q").exists()


@pytest.mark.plaintext_only(reason="how the file is read, whatever its content")
def test_a_database_this_process_has_open_is_checked_through_its_descriptor(
    tmp_path: Path,
) -> None:
    path = tmp_path / "app.db"
    _small_db(path)
    with Database.open(path) as db:
        assert db.scalar("SELECT count(*) FROM t") == 40
        check = _timed_check(path, StoreConfig())
        assert (check.kind, check.detail) == (CheckKind.OK, "quick_check ok")
        assert db.scalar("SELECT count(*) FROM t") == 40


def test_rows_only_in_the_salvage_are_counted_in_every_table_whatever_its_name(
    tmp_path: Path, db_key: DatabaseKey | None, store_env: dict[str, str]
) -> None:
    """report.json's rows_only_in_salvage counts, per table, the salvaged rows the restored
    backup lacks: a table whose name needs quoting too."""
    cfg = _config(tmp_path, "refuse", store_env)
    with Home.init(cfg) as home:
        home.db.write(lambda tx: tx.script('CREATE TABLE "odd ""name"""(v TEXT)'))
        home.db.write(lambda tx: tx.execute('INSERT INTO "odd ""name""" VALUES (\'a\')'))
        home.backup()
        home.db.write(lambda tx: tx.execute('INSERT INTO "odd ""name""" VALUES (\'b\')'))
    report = _recover(cfg, db_key)
    assert report.rows_only_in_salvage['odd "name"'] == 1
    data = json.loads(report.report_path.read_text())
    assert data["rows_only_in_salvage"]['odd "name"'] == 1


def test_a_file_cut_to_a_byte_is_still_given_to_salvage(
    tmp_path: Path, db_key: DatabaseKey | None, store_env: dict[str, str]
) -> None:
    """Whatever is left of a non-empty file is salvaged (here: nothing, and the report says
    so), and the backup restored."""
    cfg = _config(tmp_path, "refuse", store_env)
    backup = _home_with_backup(cfg, backed_up=10, after=0)
    os.truncate(cfg.db_path, 1)
    report = _recover(cfg, db_key)
    assert report.restored_from == backup
    assert report.salvage is not None
    assert report.salvage.tables == {}
    assert (report.quarantine_dir / "salvaged.db").exists()
    assert json.loads(report.report_path.read_text())["rows_salvaged"] == {}


def test_a_refused_recovery_leaves_a_quarantine_folder_that_was_there_before(
    tmp_path: Path, db_key: DatabaseKey | None, store_env: dict[str, str]
) -> None:
    """Nothing to put in place: refused, and what the recovery wrote is removed, but an
    (empty) quarantine folder that was there before is not the recovery's to remove."""
    cfg = _config(tmp_path, "refuse", store_env)
    with Home.init(cfg) as home:
        home.db.write(lambda tx: tx.script(ITEMS_DDL))
    _swap_non_sqlite(cfg.db_path)
    qdir = cfg.quarantine_dir / "20300102T030405_000000Z"
    qdir.mkdir(parents=True)
    with pytest.raises(StoreMissing):
        _recover(cfg, db_key, now=_STAMP)
    assert [p.name for p in cfg.quarantine_dir.iterdir()] == [qdir.name]
    assert list(qdir.iterdir()) == []


@pytest.mark.plaintext_only(reason="makes its own keys: a file and a key that do not go together")
def test_a_file_and_a_key_that_do_not_go_together_are_a_key_refusal_never_damage(
    tmp_path: Path,
) -> None:
    """An encrypted file checked without a key, a plaintext file checked with one, and an
    encrypted file checked with another key are the operator's to fix (KEY, its typed
    refusal as the fault, naming the file), never damage; an encrypted file cut to its
    first page is truncated by what its decrypted header declares."""
    key, other = DatabaseKey(os.urandom(32)), DatabaseKey(os.urandom(32))
    encrypted, plain = tmp_path / "enc.db", tmp_path / "plain.db"
    for path, with_key in ((encrypted, key), (plain, None)):
        conn = connect(str(path), key=with_key)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE t(x)")
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40) "
            "INSERT INTO t SELECT randomblob(300) FROM n"
        )
        conn.close()
    for path, given, refusal in (
        (encrypted, None, DatabaseKeyMissing),
        (plain, key, DatabaseNotEncrypted),
        (encrypted, other, StoreKeyError),
    ):
        check = _timed_check(path, StoreConfig(), key=given)
        assert check.kind is CheckKind.KEY, check.detail
        assert isinstance(check.fault, refusal)
        assert (check.detail, check.output) == (check.fault.message, ())
        assert str(path) in check.detail
        assert check.error() is check.fault
        assert not check.damaged

    pages = encrypted.stat().st_size // 4096
    os.truncate(encrypted, 4096)
    check = _timed_check(encrypted, StoreConfig(), key=key)
    assert (check.kind, check.detail) == (
        CheckKind.TRUNCATED,
        f"{encrypted} is truncated: header declares {pages} pages ({pages * 4096} bytes), "
        "file has 4096",
    )


def test_a_refused_recovery_keeps_a_salvaged_copy_it_did_not_write(
    tmp_path: Path, db_key: DatabaseKey | None, store_env: dict[str, str]
) -> None:
    """No backup, and the salvage refused (a salvaged.db is already in the quarantine folder:
    an earlier recovery at the same stamp): refused, naming why, and the earlier salvaged
    copy is kept: removing what an aborted recovery wrote never removes what it did not."""
    cfg = _config(tmp_path, "refuse", store_env)
    with Home.init(cfg) as home:
        home.db.write(lambda tx: tx.script(ITEMS_DDL))
    _swap_non_sqlite(cfg.db_path)
    qdir = cfg.quarantine_dir / "20300102T030405_000000Z"
    qdir.mkdir(parents=True)
    (qdir / "salvaged.db").write_bytes(b"an earlier salvage")
    with pytest.raises(StoreMissing) as caught:
        _recover(cfg, db_key, now=_STAMP)
    assert caught.value.message.endswith(
        f"nothing could be salvaged ({qdir / 'salvaged.db'} exists; salvage writes a new "
        f"file). Nothing was moved or created: {cfg.db_path.parent} is as it was."
    )
    assert (qdir / "salvaged.db").read_bytes() == b"an earlier salvage"


@pytest.mark.plaintext_only(reason="the check's report of what SQLite found, not the cipher")
def test_a_damaged_file_s_findings_are_counted_and_the_first_quoted(
    tmp_path: Path,
) -> None:
    """quick_check packs its findings into rows, many lines each, headed by a
    '*** in database main ***' line: the check counts the findings (not the header), quotes
    the first three, says how many more, and keeps them as its output (SQLite stops at 100
    findings)."""
    path = tmp_path / "app.db"
    with Database.open(path) as db:
        db.write(lambda tx: tx.script(ITEMS_DDL))
        add_items(db, 0, 1500)
    offset = leaf_page_offset(path)
    overwrite(path, offset + 8, b"\x00" * (4096 - 8) + b"\x00" * 4096 * 2)
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:  # what SQLite itself says of the file
        rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check")]
    finally:
        conn.close()
    found = [line for row in rows for line in row.splitlines() if line.strip()]
    assert found[0] == "*** in database main ***"
    findings = [line for line in found if not line.startswith("*** in database")]
    assert len(findings) == 100  # quick_check's default limit

    check = _timed_check(path, StoreConfig())

    assert check.kind is CheckKind.CORRUPT
    assert check.detail == (
        f"quick_check found {len(findings)} problem(s): {'; '.join(findings[:3])}; ... "
        f"({len(findings) - 3} more)"
    )
    assert check.output == tuple(findings)


@pytest.mark.plaintext_only(reason="the check's report of what SQLite found, not the cipher")
@pytest.mark.parametrize(
    ("nulls", "shown"),
    [
        (1, "NULL value in t.x"),
        (3, "NULL value in t.x; NULL value in t.x; NULL value in t.x"),
        (4, "NULL value in t.x; NULL value in t.x; NULL value in t.x; ... (1 more)"),
    ],
)
def test_a_few_findings_are_all_quoted_more_than_three_are_counted(
    tmp_path: Path, nulls: int, shown: str
) -> None:
    """Rows that break their table's NOT NULL (a schema edited under them): one finding per
    row; up to three are all quoted, past three the rest are counted."""
    path = tmp_path / "app.db"
    conn = connect(str(path))
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE t(x)")
        conn.executemany("INSERT INTO t VALUES (?)", [(None,)] * nulls)
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute("UPDATE sqlite_schema SET sql = 'CREATE TABLE t(x NOT NULL)' WHERE name = 't'")
    finally:
        conn.close()

    check = _timed_check(path, StoreConfig())

    assert check.kind is CheckKind.CORRUPT
    assert check.detail == f"quick_check found {nulls} problem(s): {shown}"
    assert check.output == ("NULL value in t.x",) * nulls
