"""Reader pool + single writer under concurrent load (seed 003's split pools): many threads
reading while several write, then several processes writing the same file. Every write is
acknowledged exactly once, nothing is lost, no caller ever sees SQLITE_BUSY, and every read
sees a consistent snapshot (a bot's soul pointer always has its version row)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from examples.bots.bot.types import NewBot
from examples.bots.store import DATABASE_URL_ENV, BotStore

ROOT = Path(__file__).resolve().parents[3]


def test_threads_reading_and_writing_concurrently(store: BotStore) -> None:
    writers, per_writer, readers = 4, 40, 8
    errors: list[BaseException] = []
    stop = threading.Event()
    reads = [0] * readers
    inconsistent: list[str] = []

    def write(n: int) -> None:
        try:
            for i in range(per_writer):
                bot = store.bots.create(NewBot(slug=f"w{n}-{i}", name=f"W{n} {i}"))
                store.souls.save(bot.id, f"soul of {bot.slug}")
                store.souls.save(bot.id, f"soul of {bot.slug}, edited")
        except BaseException as err:
            errors.append(err)

    def read(n: int) -> None:
        try:
            while True:  # at least one pass, even if the writers finished first
                page = store.bots.list(sort="created_at", direction="desc", limit=10)
                for bot in page.items:
                    soul = store.souls.current(bot.id)
                    if bot.version_count and soul is None:
                        inconsistent.append(bot.slug)
                reads[n] += 1
                if stop.is_set():
                    break
        except BaseException as err:
            errors.append(err)

    read_threads = [threading.Thread(target=read, args=(n,)) for n in range(readers)]
    write_threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in read_threads + write_threads:
        t.start()
    for t in write_threads:
        t.join(timeout=240)
    stop.set()
    for t in read_threads:
        t.join(timeout=60)

    assert errors == []
    assert inconsistent == []
    assert all(count > 0 for count in reads)
    total = writers * per_writer
    assert store.db.scalar("SELECT count(*) FROM bots") == total
    assert store.db.scalar("SELECT count(*) FROM soul_versions") == 2 * total
    assert store.db.scalar("SELECT count(*) FROM bots WHERE version_count != 2") == 0


WRITER = """
import sys
from examples.bots.bot.types import NewBot
from examples.bots.store import BotStore

data_dir, tag, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
env = {"BOTERNITY_MASTER_KEY": sys.argv[4]}
if len(sys.argv) > 5:  # the PostgreSQL run: the same server and schema as the test's
    env["BOTERNITY_DATABASE_URL"] = sys.argv[5]
with BotStore.open(data_dir, env=env) as store:
    for i in range(count):
        bot = store.bots.create(NewBot(slug=f"{tag}-{i}", name=tag))
        store.souls.save(bot.id, "soul")
print("done", tag)
"""


@pytest.mark.slow
def test_several_processes_share_one_database(store: BotStore, env: dict[str, str]) -> None:
    """Each process has its own writer; SQLite's lock arbitrates between them and
    busy_timeout absorbs the waits: no process sees an error."""
    key = env["BOTERNITY_MASTER_KEY"]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                str(store.data_dir),
                f"p{n}",
                "60",
                key,
                *([env[DATABASE_URL_ENV]] if DATABASE_URL_ENV in env else []),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    # This process keeps reading and writing meanwhile.
    for i in range(30):
        store.bots.create(NewBot(slug=f"parent-{i}", name="parent"))
        store.bots.list(limit=5)
    results = [p.communicate(timeout=240) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert out.startswith("done")
    assert store.db.scalar("SELECT count(*) FROM bots") == 3 * 60 + 30
    assert store.db.scalar("SELECT count(*) FROM soul_versions") == 3 * 60
    if store.db.dialect.name == "sqlite":
        assert store.db.query("PRAGMA integrity_check") == [("ok",)]
