"""Seed 003's storage foundation: WAL on every connection (writer and readers), split pools
(one writer, up to 8 readers), auto-migration on open, data dir from BOTERNITY_DATA_DIR, FK
enforcement with the soul-version cascade."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bastion.errors import ReferenceViolation
from bastion.store import ReadTx
from bastion.store.migrations import Migrator
from examples.bots import migrations
from examples.bots.bot.types import NewBot
from examples.bots.store import DATA_DIR_ENV, READERS, BotStore, default_data_dir


def test_data_dir_comes_from_the_environment(sqlite_env: dict[str, str], tmp_path: Path) -> None:
    env = sqlite_env
    assert default_data_dir(env) == tmp_path / "boternity"
    with BotStore.open(env=env) as store:
        assert store.data_dir == tmp_path / "boternity"
        assert (tmp_path / "boternity" / "boternity.db").exists()
    assert default_data_dir({}) == Path.home() / ".boternity"
    assert default_data_dir({DATA_DIR_ENV: "  "}) == Path.home() / ".boternity"


def test_open_auto_migrates_and_reopening_changes_nothing(env: dict[str, str]) -> None:
    with BotStore.open(env=env) as store:
        state = Migrator(store.db).status([migrations.namespace()])[0]
        assert state.applied == ("0001_initial", "0002_secret_purges")
        assert state.pending == ()
        tables = set(store.db.dialect.table_names(store.db))
        assert {"bots", "soul_versions", "api_keys"} <= tables
        assert "secrets" not in tables  # secrets live in the vault, not in this database
        backups = sorted((store.data_dir / "backups").glob("pre-migrate-bots-*.db"))
    with BotStore.open(env=env) as store:
        assert Migrator(store.db).status([migrations.namespace()])[0].applied[-1] == (
            "0002_secret_purges"
        )
        # Nothing pending on the second open: no second pre-migration backup.
        assert sorted((store.data_dir / "backups").glob("pre-migrate-bots-*.db")) == backups


def test_wal_on_the_writer_and_on_every_reader(sqlite_store: BotStore) -> None:
    store = sqlite_store
    assert store.db.posture.journal_mode == "WAL"
    assert store.db.posture.foreign_keys is True
    seen: list[str] = []
    barrier = threading.Barrier(READERS)

    def reader() -> None:
        # Each thread holds a snapshot while the others take theirs: READERS distinct
        # connections from the pool, each asked for its own journal mode.
        def unit(tx: ReadTx) -> None:
            seen.append(str(tx.scalar("PRAGMA journal_mode")))
            barrier.wait(timeout=30)

        store.db.read(unit)

    threads = [threading.Thread(target=reader) for _ in range(READERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert seen == ["wal"] * READERS
    assert store.db.config.readers == READERS


def test_deleting_a_bot_cascades_to_its_soul_versions(store: BotStore) -> None:
    bot = store.bots.create(NewBot(slug="helper", name="Helper"))
    store.souls.save(bot.id, "v1")
    store.souls.save(bot.id, "v2")
    assert store.db.scalar("SELECT count(*) FROM soul_versions WHERE bot_id = ?", (bot.id,)) == 2
    store.bots.delete(bot.id)
    assert store.db.scalar("SELECT count(*) FROM soul_versions WHERE bot_id = ?", (bot.id,)) == 0


def test_a_soul_for_an_unknown_bot_is_refused_by_the_foreign_key(store: BotStore) -> None:
    with pytest.raises(ReferenceViolation):
        store.souls.save("no-such-bot", "orphan soul")
    assert store.db.scalar("SELECT count(*) FROM soul_versions") == 0
