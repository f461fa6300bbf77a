"""Deleting a bot and purging its secrets touch two databases (``boternity.db`` and the vault's
``vault.db``), so they cannot be one transaction. A real process is killed with SIGKILL at each
point between the steps; the next open must finish the purge, so no ``bot:<id>`` secret
outlives its bot, and the global secrets and other bots' secrets are untouched."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from bastion.store import Database
from examples.bots.bot.types import NewBot
from examples.bots.store import DATABASE_URL_ENV, BotStore

ROOT = Path(__file__).resolve().parents[3]

# The child deletes a bot with SIGKILL wired at one point of delete_bot: "purge" (the bot's
# row and the journal committed, the vault not yet touched) or "journal" (the vault's scope
# deleted, the journal row not yet cleared).
CHILD = """
import os, signal, sys
from examples.bots.bot.repo import BotRepo
from examples.bots.store import BotSecrets, BotStore

data_dir, bot_id, point = sys.argv[1:4]

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

store = BotStore.open(data_dir)
if point == "purge":
    BotSecrets.purge_bot = die
else:
    real = BotSecrets.purge_bot
    def purge_then_die(self, bot):
        real(self, bot)
        die()
    BotSecrets.purge_bot = purge_then_die
store.delete_bot(bot_id)
print("not killed")
"""


def _count(
    data_dir: Path, db: str, sql: str, *args: object, env: dict[str, str] | None = None
) -> int:
    url = (env or {}).get(DATABASE_URL_ENV)
    if url and db == "boternity.db":  # the app's tables are on the PostgreSQL server
        with closing(Database.open(url)) as pg:
            return int(pg.scalar(sql, args))
    with closing(sqlite3.connect(f"file:{data_dir / db}?mode=ro", uri=True)) as conn:
        return int(conn.execute(sql, args).fetchone()[0])


@pytest.mark.parametrize("point", ["purge", "journal"])
def test_kill_9_between_delete_and_purge_is_finished_by_the_next_open(
    env: dict[str, str], point: str
) -> None:
    with BotStore.open(env=env) as store:
        bot = store.bots.create(NewBot(slug="doomed", name="Doomed"))
        other = store.bots.create(NewBot(slug="kept", name="Kept"))
        store.souls.save(bot.id, "soul")
        store.secrets.set("OPENAI_API_KEY", "sk-bot-value", bot_id=bot.id)
        store.secrets.set("SLACK_TOKEN", "xoxb-bot-value", bot_id=bot.id)
        store.secrets.set("OPENAI_API_KEY", "sk-other-value", bot_id=other.id)
        store.secrets.set("OPENAI_API_KEY", "sk-global-value")
        data_dir = store.data_dir

    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(data_dir), bot.id, point],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert "not killed" not in child.stdout

    # What the kill left on disk: the bot gone, its purge journaled; at "purge" its secrets
    # still in the vault (the state the old two-step delete left forever).
    assert (
        _count(data_dir, "boternity.db", "SELECT count(*) FROM bots WHERE id = ?", bot.id, env=env)
        == 0
    )
    assert _count(data_dir, "boternity.db", "SELECT count(*) FROM bot_secret_purges", env=env) == 1
    scope = f"bot:{bot.id}"
    left = _count(
        data_dir, "vault/vault.db", "SELECT count(*) FROM vault_secrets WHERE scope = ?", scope
    )
    assert left == (2 if point == "purge" else 0)

    with BotStore.open(env=env) as store:
        assert store.secrets.names(bot_id=bot.id) == []
        assert store.bots.pending_purges() == []
        assert store.secrets.get("OPENAI_API_KEY", bot_id=other.id).reveal() == "sk-other-value"
        assert store.secrets.get("OPENAI_API_KEY").reveal() == "sk-global-value"
        assert store.bots.get(other.id) is not None
    assert (
        _count(
            data_dir, "vault/vault.db", "SELECT count(*) FROM vault_secrets WHERE scope = ?", scope
        )
        == 0
    )


def test_without_the_master_key_the_purge_waits_in_the_journal(env: dict[str, str]) -> None:
    with BotStore.open(env=env) as store:
        bot = store.bots.create(NewBot(slug="later", name="Later"))
        store.secrets.set("TOKEN", "tok-later-value", bot_id=bot.id)
        data_dir = store.data_dir
    locked = {k: v for k, v in env.items() if k != "BOTERNITY_MASTER_KEY"}
    with BotStore.open(data_dir, env=locked) as store:
        store.delete_bot(bot.id)  # the bot goes; its secrets cannot be reached yet
        assert store.bots.get(bot.id) is None
        assert store.bots.pending_purges() == [bot.id]
    with BotStore.open(env=env) as store:
        assert store.bots.pending_purges() == []
        assert store.secrets.names(bot_id=bot.id) == []
