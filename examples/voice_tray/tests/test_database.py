"""Seed 001's database module on bastion's store: the five tables, their indexes, the
seed's queries, statistics, retention, vacuum, integrity, posture and file modes."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest
from tests.helpers import await_until

from bastion.app import Home
from bastion.config import Config, load_config
from bastion.errors import Conflict, NotFound, ReferenceViolation
from bastion.scheduler import JobStatus
from bastion.store import WriteTx
from bastion.store.plan import assert_indexes, assert_plan, namespace_indexes
from bastion.store.wal import checkpoint
from examples.voice_tray.app import PRUNE_JOB, VoiceTray
from examples.voice_tray.database import TRANSCRIPTIONS_DAYS_KEY, AppDatabase, namespace
from examples.voice_tray.queries import HOT_QUERIES

DAY = 86400.0


@pytest.fixture
def app_db(cfg: Config) -> Iterator[AppDatabase]:
    home = Home.open(cfg)
    try:
        yield AppDatabase.attach(home)
    finally:
        home.close()


def test_posture_is_wal_normal_with_foreign_keys(app_db: AppDatabase) -> None:
    posture = app_db.db.posture
    assert posture.journal_mode == "WAL"
    assert posture.synchronous == "NORMAL"
    assert posture.foreign_keys is True
    assert posture.busy_timeout_ms >= 2000


def test_database_files_are_private(app_db: AppDatabase, cfg: Config) -> None:
    app_db.save_setting("theme", "dark")
    for path in (cfg.db_path, cfg.home):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"


def test_settings(app_db: AppDatabase) -> None:
    assert app_db.load_setting("theme") is None
    app_db.save_setting("theme", "dark")
    app_db.save_setting("hotkey", {"key": "F9", "modifiers": ["ctrl"]})
    assert app_db.load_setting("theme") == "dark"
    assert app_db.load_setting("hotkey") == {"key": "F9", "modifiers": ["ctrl"]}
    assert app_db.load_setting("missing", 42) == 42


def test_logs_by_page_level_and_age(app_db: AppDatabase) -> None:
    for i in range(5):
        app_db.insert_log("INFO", "tray", f"line {i}", {"i": i})
    app_db.insert_log("ERROR", "whisper", "model crashed")
    app_db.insert_log("WARN", "whisper", "slow")
    page = app_db.get_logs(limit=3)
    assert [r.message for r in page.items] == ["slow", "model crashed", "line 4"]
    assert page.next_cursor is not None
    rest = app_db.get_logs(limit=10, cursor=page.next_cursor)
    assert [r.message for r in rest.items] == [f"line {i}" for i in (3, 2, 1, 0)]
    assert [r.message for r in app_db.get_logs_by_level("ERROR")] == ["model crashed"]
    assert len(app_db.get_logs_by_level("warning")) == 2
    assert app_db.delete_logs_before(time.time() + 1) == 7
    assert app_db.get_statistics().log_count == 0


def test_profiles_unique_name_and_voice_lookup(app_db: AppDatabase) -> None:
    alice = app_db.insert_profile(
        "alice", {"admin": True}, voice_id="speaker_1", allowed_commands=["lights", "music"]
    )
    app_db.insert_profile("bob", {"admin": False})
    with pytest.raises(Conflict):
        app_db.insert_profile("alice", {})
    found = app_db.get_profile_by_voice_id("speaker_1")
    assert found == alice
    assert found.allowed_commands == ("lights", "music")
    assert app_db.get_profile_by_voice_id("speaker_9") is None
    renamed = app_db.profiles.update(dataclasses.replace(alice, name="alice2"))
    assert app_db.profiles.get(alice.id) == renamed
    with pytest.raises(NotFound):
        app_db.profiles.delete(999)


def test_transcriptions_by_profile_newest_first(app_db: AppDatabase) -> None:
    alice = app_db.insert_profile("alice", {})
    bob = app_db.insert_profile("bob", {})
    now = time.time()
    for i in range(5):
        app_db.insert_transcription(f"alice {i}", profile_id=alice.id, ts=now + i, confidence=0.9)
    app_db.insert_transcription("bob 0", profile_id=bob.id, ts=now, sent_to_n8n=True, success=True)
    got = app_db.get_transcriptions_by_profile(alice.id, limit=3)
    assert [t.text for t in got] == ["alice 4", "alice 3", "alice 2"]
    (bobs,) = app_db.get_transcriptions_by_profile(bob.id)
    assert (bobs.sent_to_n8n, bobs.success) == (True, True)
    with pytest.raises(ValueError, match="limit"):
        app_db.get_transcriptions_by_profile(alice.id, limit=0)


def test_transcription_of_an_unknown_profile_is_refused(app_db: AppDatabase) -> None:
    with pytest.raises(ReferenceViolation):
        app_db.insert_transcription("who?", profile_id=12345)
    assert app_db.get_statistics().transcription_count == 0


def test_deleting_a_profile_keeps_its_history_unassigned(app_db: AppDatabase) -> None:
    alice = app_db.insert_profile("alice", {})
    app_db.insert_transcription("hello", profile_id=alice.id)
    app_db.profiles.delete(alice.id)
    (kept,) = app_db.transcriptions.recent()
    assert (kept.text, kept.profile_id) == ("hello", None)
    assert app_db.integrity_check() is True


def test_delete_transcriptions_before(app_db: AppDatabase) -> None:
    now = time.time()
    for age_days in (100, 50, 1):
        app_db.insert_transcription(f"{age_days}d", ts=now - age_days * DAY)
    assert app_db.delete_transcriptions_before(now - 30 * DAY) == 2
    assert [t.text for t in app_db.transcriptions.recent()] == ["1d"]


def test_activity_per_profile(app_db: AppDatabase) -> None:
    alice = app_db.insert_profile("alice", {})
    app_db.record_activity("command", profile_id=alice.id, details={"command": "lights on"})
    app_db.record_activity("command", profile_id=alice.id, success=False)
    app_db.record_activity("startup")
    mine = app_db.get_activity(alice.id)
    assert [a.details["success"] for a in mine if a.details] == [False, True]  # newest first
    assert app_db.get_statistics().activity_count == 3


def test_statistics(app_db: AppDatabase, cfg: Config) -> None:
    alice = app_db.insert_profile("alice", {})
    app_db.insert_transcription("one", profile_id=alice.id)
    app_db.insert_log("info", "tray", "started")
    app_db.record_activity("startup")
    stats = app_db.get_statistics()
    assert (stats.log_count, stats.profile_count, stats.transcription_count) == (1, 1, 1)
    assert stats.activity_count == 1
    on_disk = cfg.db_path.stat().st_size + (cfg.home / "bastion.db-wal").stat().st_size
    assert stats.file_size_bytes == on_disk


def test_retention_prunes_in_batches_and_reclaims_space(app_db: AppDatabase) -> None:
    now = time.time()
    app_db.save_setting(TRANSCRIPTIONS_DAYS_KEY, 30)
    old = [(now - 60 * DAY + i, "x" * 2000) for i in range(300)]
    for ts, text in old:
        app_db.insert_transcription(text, ts=ts)
    app_db.insert_transcription("recent", ts=now)
    dry = app_db.prune(dry_run=True)
    assert dry["tables"]["transcriptions"]["deleted"] == 300
    assert app_db.get_statistics().transcription_count == 301  # dry run deleted nothing
    summary = app_db.prune()
    assert summary["tables"]["transcriptions"]["deleted"] == 300
    assert [t.text for t in app_db.transcriptions.recent()] == ["recent"]
    # more than a quarter of the file was free: retention gave it back, on disk, while open
    assert summary["vacuum"]["page_count_after"] < summary["vacuum"]["page_count_before"]
    after = app_db.db.file_sizes()
    assert summary["vacuum"]["file_bytes_after"] == after["db"]
    assert after["db"] < summary["vacuum"]["file_bytes_before"] - 300 * 2000 // 2
    assert app_db.get_statistics().file_size_bytes == after["db"] + after["wal"]
    assert app_db.integrity_check() is True


def test_vacuum_gives_free_pages_back(app_db: AppDatabase) -> None:
    now = time.time()
    for i in range(200):
        app_db.insert_transcription("y" * 2000, ts=now - 100 * DAY + i)
    checkpoint(app_db.db, "TRUNCATE")  # the rows are in the file, not only the WAL
    full = app_db.db.file_sizes()["db"]
    assert full > 200 * 2000
    assert app_db.delete_transcriptions_before(now) == 200
    assert app_db.db.scalar("PRAGMA freelist_count") > 0
    result = app_db.vacuum()
    assert result.mode == "full"
    assert result.freelist_after == 0
    assert result.page_count_after < result.page_count_before
    # The file itself shrank while the database stays open (what the seed's vacuum is for),
    # and the WAL the rewrite went through was checkpointed and truncated.
    sizes = app_db.db.file_sizes()
    assert sizes["db"] == result.file_bytes_after
    assert sizes["db"] < full - 200 * 2000 // 2
    assert sizes["wal"] == 0
    assert app_db.integrity_check() is True


def test_hot_queries_use_their_indexes(app_db: AppDatabase) -> None:
    assert_indexes(app_db.db, namespace_indexes(namespace()), namespace="voice_tray")
    for hot in HOT_QUERIES:
        assert_plan(app_db.db, hot.sql, hot.params, index=hot.index)


def test_prune_runs_on_bastions_scheduler(cfg: Config, v1_config: Path) -> None:
    """The seed's "add database cleanup scheduled task": the tray schedules its own prune()
    on the maintenance thread bastion gives a library app (Home.start_maintenance)."""
    now = time.time()
    home = Home.open(cfg)
    try:
        app_db = AppDatabase.attach(home)
        app_db.save_setting(TRANSCRIPTIONS_DAYS_KEY, 30)
        for i in range(50):
            app_db.insert_transcription("old", ts=now - 60 * DAY + i)
        app_db.insert_transcription("recent", ts=now)
    finally:
        home.close()

    async def scenario() -> tuple[list[str], float]:
        tray = await VoiceTray.open(cfg, config_path=v1_config, first_prune_in_s=0)
        try:
            assert tray.maintenance is not None
            maintenance = tray.maintenance

            def pruned() -> JobStatus | None:
                (job,) = [j for j in maintenance.status() if j.name == PRUNE_JOB]
                return job if job.runs >= 1 else None

            job = await await_until(pruned, timeout=30, what="the scheduled prune")
            assert job is not None
            assert job.failures == 0
            assert job.last_error is None
            return [t.text for t in tray.db.transcriptions.recent()], job.interval_s
        finally:
            await tray.close()

    texts, interval = asyncio.run(scenario())
    assert texts == ["recent"]
    assert interval == cfg.retention.interval_s  # then again every [retention] interval_s


def test_no_maintenance_schedules_nothing(cfg: Config, v1_config: Path) -> None:
    async def scenario() -> None:
        tray = await VoiceTray.open(cfg, config_path=v1_config, maintenance=False)
        try:
            assert tray.maintenance is None
        finally:
            await tray.close()

    asyncio.run(scenario())


def test_concurrent_callers_share_the_pool_and_lose_nothing(app_db: AppDatabase) -> None:
    """The seed's "connection pooling via Arc<Mutex>": here bastion's reader pool and single
    writer. Eight threads write and read at once: every row is kept, ids are unique; and a
    read made while a write transaction is open is answered from the last commit by a pooled
    reader instead of waiting behind the writer (the seed's one mutex would serialize it)."""
    writers, each = 8, 40
    errors: list[BaseException] = []
    ids: list[int] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        try:
            for i in range(each):
                t = app_db.insert_transcription(f"w{n}-{i}")
                app_db.get_statistics()
                with lock:
                    ids.append(t.id)
        except BaseException as err:  # reported below, with the thread that raised it
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len(ids) == len(set(ids)) == writers * each
    assert app_db.transcriptions.count() == writers * each

    entered, release = threading.Event(), threading.Event()

    def held(tx: WriteTx) -> None:
        tx.insert(
            "INSERT INTO transcriptions (ts, text, sent_to_n8n) VALUES (?, 'held', 0)",
            (time.time(),),
        )
        entered.set()
        assert release.wait(timeout=60)

    holder = threading.Thread(target=lambda: app_db.db.write(held))
    holder.start()
    try:
        assert entered.wait(timeout=60)
        assert app_db.transcriptions.count() == writers * each  # not blocked, last commit
    finally:
        release.set()
        holder.join(timeout=60)
    assert app_db.transcriptions.count() == writers * each + 1


def test_the_maintenance_backs_up_the_apps_tables(cfg: Config, v1_config: Path) -> None:
    """The seed's "automatic SQLite backups": the tray's tables live in bastion.db, whose
    backup job (verified, rotated, on [backup] interval_s) runs on the maintenance thread
    VoiceTray.open starts; a backup it makes holds the tray's rows."""

    async def scenario() -> JobStatus:
        tray = await VoiceTray.open(cfg, config_path=v1_config)
        try:
            assert tray.maintenance is not None
            tray.db.insert_transcription("kept by the backup")
            return await asyncio.to_thread(tray.maintenance.run_now, "backup")
        finally:
            await tray.close()

    job = asyncio.run(scenario())
    assert job.failures == 0
    assert job.last_error is None
    assert job.interval_s == cfg.backup.interval_s
    (backup,) = sorted(cfg.backups_dir.rglob("bastion-*.db"))
    conn = apsw.Connection(
        f"file:{backup}?mode=ro", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
    )
    try:
        rows = conn.execute("SELECT text FROM transcriptions").fetchall()
        assert rows == [("kept by the backup",)]
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


def test_the_tray_runs_on_an_encrypted_database(
    tmp_path: Path, env: dict[str, str], v1_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seed's "add sqlcipher support": bastion's encryption at rest (SQLite3 Multiple
    Ciphers), chosen by configuration (``store.encryption = "required"``, the key from
    ``store.key_source``: the keychain, a passphrase, or here the environment). The tray
    writes and reads as before; no byte of its data is in the files on disk, WAL and backup
    included, and the files are not SQLite's plaintext format."""
    dictated = "dictated-SENTINEL-7e21 private words"
    store_env = {
        **env,
        "BASTION_STORE_ENCRYPTION": "required",
        "BASTION_STORE_KEY_SOURCE": "env",
        "BASTION_DB_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    for name, value in store_env.items():
        monkeypatch.setenv(name, value)
    cfg = load_config(tmp_path / "encrypted-home", env=store_env)
    assert cfg.store.encryption == "required"
    Home.init(cfg).close()

    async def scenario() -> list[str]:
        tray = await VoiceTray.open(cfg, config_path=v1_config)
        try:
            tray.db.insert_transcription(dictated)
            assert tray.maintenance is not None
            await asyncio.to_thread(tray.maintenance.run_now, "backup")
            return [t.text for t in tray.db.transcriptions.recent()]
        finally:
            await tray.close()

    assert asyncio.run(scenario()) == [dictated]
    files = [p for p in cfg.home.rglob("*") if p.is_file() and ".db" in p.name]
    assert any(p.name == "bastion.db" for p in files)
    assert any(p.parent == cfg.backups_dir or cfg.backups_dir in p.parents for p in files)
    for path in files:
        data = path.read_bytes()
        assert dictated.encode() not in data, path
        if path.suffix == ".db" and data:
            assert not data.startswith(b"SQLite format 3\0"), path

    async def reopened() -> list[str]:
        tray = await VoiceTray.open(cfg, config_path=v1_config, maintenance=False)
        try:
            return [t.text for t in tray.db.transcriptions.recent()]
        finally:
            await tray.close()

    assert asyncio.run(reopened()) == [dictated]


def test_point_in_time_recovery_puts_the_trays_tables_back(cfg: Config, v1_config: Path) -> None:
    """The seed's "point-in-time recovery": opened with ``archive=True`` the tray's database
    is archived continuously, and ``bastion db restore --at`` puts its tables back as they
    were at an instant between two dictations."""
    from click.testing import CliRunner

    from bastion.cli import cli
    from bastion.store.archive import timeline

    def based() -> bool:
        found = timeline(cfg.archive_dir, "bastion")
        return bool(found) and found[-1].restorable_from is not None

    async def scenario() -> float:
        tray = await VoiceTray.open(cfg, config_path=v1_config, maintenance=False, archive=True)
        try:
            await await_until(based, timeout=60, what="the archive's base snapshot")
            tray.db.insert_transcription("first")
            between = time.time()
            # The next commit strictly later than the instant (a wall clock, not a sleep).
            await await_until(lambda: time.time() > between + 0.001, what="the clock to move")
            tray.db.insert_transcription("second")
            return between
        finally:
            await tray.close()

    between = asyncio.run(scenario())
    at = dt.datetime.fromtimestamp(between, dt.UTC).isoformat()
    result = CliRunner().invoke(
        cli, ["--home", str(cfg.home), "db", "restore", "--at", at, "--yes", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["checks"]["integrity_ok"] is True
    home = Home.open(cfg)
    try:
        assert [t.text for t in AppDatabase.attach(home).transcriptions.recent()] == ["first"]
    finally:
        home.close()
