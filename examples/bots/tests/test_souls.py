"""Seed 003 plan 01-06 on the soul history: every stored version passes its integrity check
(the hash is checked against the stored content, not a blank), a tampered row is named,
rollback makes an old version current as a new version (history stays append-only), and diff
compares two versions."""

from __future__ import annotations

import threading

import pytest

from bastion.errors import NotFound, StoreCorrupt
from examples.bots.bot.types import NewBot
from examples.bots.store import BotStore

V1 = "You are kind.\nYou answer briefly.\n"
V2 = "You are kind.\nYou answer at length.\nYou cite sources.\n"
V3 = "You are terse."


def _bot_with_history(store: BotStore) -> str:
    bot = store.bots.create(NewBot(slug="soulful", name="Soulful"))
    for content in (V1, V2, V3):
        store.souls.save(bot.id, content)
    return bot.id


def test_every_version_in_the_history_is_intact_and_whole(store: BotStore) -> None:
    bot_id = _bot_with_history(store)
    history = store.souls.history(bot_id)
    assert [s.version for s in history] == [3, 2, 1]
    assert [s.content for s in history] == [V3, V2, V1]
    assert all(s.intact for s in history)
    assert store.souls.verify(bot_id) == []
    assert history[-1] == store.souls.get(bot_id, 1)


def test_a_tampered_version_is_named_and_never_rolled_back_to(store: BotStore) -> None:
    bot_id = _bot_with_history(store)
    # Changed outside the app: the content no longer matches the stored hash.
    store.db.write(
        lambda tx: tx.execute(
            "UPDATE soul_versions SET content = 'You obey anyone.' WHERE bot_id = ? AND version = 2",
            (bot_id,),
        )
    )
    assert store.souls.verify(bot_id) == [2]
    assert [s.intact for s in store.souls.history(bot_id)] == [True, False, True]
    with pytest.raises(StoreCorrupt, match="soul version 2") as info:
        store.souls.rollback(bot_id, 2)
    assert "verify()" in (info.value.hint or "")
    with pytest.raises(StoreCorrupt):
        store.souls.diff(bot_id, 1, 2)
    # Nothing was written by the refused rollback.
    assert [s.version for s in store.souls.history(bot_id)] == [3, 2, 1]


def test_rollback_saves_the_old_content_as_a_new_version(store: BotStore) -> None:
    bot_id = _bot_with_history(store)
    rolled = store.souls.rollback(bot_id, 1)
    assert (rolled.version, rolled.content, rolled.message) == (4, V1, "rollback to version 1")
    assert rolled.intact
    assert store.souls.current(bot_id) == rolled
    bot = store.bots.get(bot_id)
    assert bot is not None
    assert bot.version_count == 4
    # Append-only: the versions rolled over are still there, unchanged.
    assert [s.content for s in store.souls.history(bot_id)] == [V1, V3, V2, V1]
    again = store.souls.rollback(bot_id, 3, "back to terse")
    assert (again.version, again.content, again.message) == (5, V3, "back to terse")


def test_rollback_to_an_unknown_version_or_bot_is_not_found_and_writes_nothing(
    store: BotStore,
) -> None:
    bot_id = _bot_with_history(store)
    with pytest.raises(NotFound, match="no soul version 9"):
        store.souls.rollback(bot_id, 9)
    with pytest.raises(NotFound):
        store.souls.rollback("no-such-bot", 1)
    assert [s.version for s in store.souls.history(bot_id)] == [3, 2, 1]


def test_rollbacks_racing_saves_keep_a_gapless_history(store: BotStore) -> None:
    bot_id = _bot_with_history(store)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                if n % 2:
                    store.souls.rollback(bot_id, 1 + i % 3)
                else:
                    store.souls.save(bot_id, f"writer {n} save {i}")
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    history = store.souls.history(bot_id)
    assert sorted(s.version for s in history) == list(range(1, 44))
    assert store.souls.verify(bot_id) == []


def test_diff_between_two_versions(store: BotStore) -> None:
    bot_id = _bot_with_history(store)
    diff = store.souls.diff(bot_id, 1, 2)
    assert (diff.old, diff.new, diff.added_lines, diff.removed_lines) == (1, 2, 2, 1)
    assert diff.unified.splitlines() == [
        "--- soul v1",
        "+++ soul v2",
        "@@ -1,2 +1,3 @@",
        " You are kind.",
        "-You answer briefly.",
        "+You answer at length.",
        "+You cite sources.",
    ]
    # A last line without a newline still ends its diff line.
    assert store.souls.diff(bot_id, 2, 3).unified.endswith("+You are terse.\n")
    rolled = store.souls.rollback(bot_id, 1)
    same = store.souls.diff(bot_id, 1, rolled.version)
    assert same.identical
    assert (same.added_lines, same.removed_lines) == (0, 0)
    with pytest.raises(NotFound):
        store.souls.diff(bot_id, 1, 99)
