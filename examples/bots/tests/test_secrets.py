"""Seed 003's secrets: global and bot-scoped, upsert semantics, AES-256-GCM at rest (bastion's
encrypted-file vault backend), scope as a string so keys can be provisioned before their bot
exists; and no plaintext anywhere on disk (sentinel scan)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from bastion.errors import SecretNotFound, VaultLocked
from examples.bots.bot.types import NewBot
from examples.bots.store import MASTER_KEY_ENV, BotStore

SENTINEL = "sk-botsSENTINEL-9f8e7d6c5b4a3210"


def test_global_and_bot_scoped_secrets_are_separate(store: BotStore) -> None:
    bot = store.bots.create(NewBot(slug="a", name="A"))
    store.secrets.set("OPENAI_API_KEY", "global-value")
    store.secrets.set("OPENAI_API_KEY", "bot-value", bot_id=bot.id)
    assert store.secrets.get("OPENAI_API_KEY").reveal() == "global-value"
    assert store.secrets.get("OPENAI_API_KEY", bot_id=bot.id).reveal() == "bot-value"
    other = store.bots.create(NewBot(slug="b", name="B"))
    # A bot without its own value falls back to the global one.
    assert store.secrets.resolve("OPENAI_API_KEY", other.id).reveal() == "global-value"
    assert store.secrets.resolve("OPENAI_API_KEY", bot.id).reveal() == "bot-value"
    with pytest.raises(SecretNotFound):
        store.secrets.get("OPENAI_API_KEY", bot_id=other.id)


def test_set_is_an_upsert_with_a_new_version(store: BotStore) -> None:
    first = store.secrets.set("TOKEN", "one")
    second = store.secrets.set("TOKEN", "two")
    assert (first.version, second.version) == (1, 2)
    assert store.secrets.get("TOKEN").reveal() == "two"
    assert [m.name for m in store.secrets.names()] == ["TOKEN"]


def test_secrets_can_be_provisioned_for_a_bot_that_does_not_exist_yet(store: BotStore) -> None:
    store.secrets.set("SLACK_TOKEN", "xoxb-later", bot_id="future-bot")
    assert store.secrets.get("SLACK_TOKEN", bot_id="future-bot").reveal() == "xoxb-later"


def test_deleting_a_bot_purges_its_secrets_but_not_the_global_ones(store: BotStore) -> None:
    bot = store.bots.create(NewBot(slug="gone", name="Gone"))
    store.secrets.set("K1", "v1", bot_id=bot.id)
    store.secrets.set("K2", "v2", bot_id=bot.id)
    store.secrets.set("K1", "global")
    store.delete_bot(bot.id)
    assert store.secrets.names(bot_id=bot.id) == []
    assert store.secrets.get("K1").reveal() == "global"


def test_listing_returns_metadata_never_values(store: BotStore) -> None:
    store.secrets.set("API_KEY", SENTINEL, bot_id="b1")
    metas = store.secrets.names(bot_id="b1")
    assert [(m.name, m.scope, m.backend) for m in metas] == [
        ("API_KEY", "bot:b1", "encrypted-file")
    ]
    assert SENTINEL not in repr(metas)
    assert SENTINEL not in repr(store.secrets.get("API_KEY", bot_id="b1"))


def test_no_plaintext_secret_anywhere_on_disk(env: dict[str, str]) -> None:
    with BotStore.open(env=env) as store:
        bot = store.bots.create(NewBot(slug="scan", name="Scan"))
        store.secrets.set("API_KEY", SENTINEL, bot_id=bot.id)
        store.secrets.set("GLOBAL_KEY", SENTINEL)
        assert store.secrets.get("API_KEY", bot_id=bot.id).reveal() == SENTINEL
        _, api_key = store.api_keys.create("scan")
        data_dir = store.data_dir
    needles = [
        SENTINEL.encode(),
        base64.b64encode(SENTINEL.encode()),
        api_key.reveal().encode(),
    ]
    files = [p for p in Path(data_dir).rglob("*") if p.is_file()]
    assert any(p.name == "vault.db" for p in files)
    leaks = [(p, n) for p in files for n in needles if n in p.read_bytes()]
    assert leaks == []


def test_a_wrong_master_key_cannot_read_anything(env: dict[str, str]) -> None:
    with BotStore.open(env=env) as store:
        store.secrets.set("API_KEY", SENTINEL)
    wrong = dict(env, **{MASTER_KEY_ENV: base64.b64encode(b"\x01" * 32).decode()})
    with BotStore.open(env=wrong) as store, pytest.raises(VaultLocked) as info:
        store.secrets.get("API_KEY")
    assert SENTINEL not in str(info.value)


def test_without_a_master_key_bots_work_and_secrets_say_which_variable_to_set(
    tmp_path: Path,
) -> None:
    with BotStore.open(tmp_path / "nokey", env={}) as store:
        store.bots.create(NewBot(slug="still-works", name="Still works"))
        with pytest.raises(VaultLocked, match=MASTER_KEY_ENV) as info:
            store.secrets.set("API_KEY", SENTINEL)
        assert MASTER_KEY_ENV in info.value.hint
        assert SENTINEL not in str(info.value)
        assert store.secrets.names() == []  # nothing half-stored
