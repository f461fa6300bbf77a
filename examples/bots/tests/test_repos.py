"""Typed repositories (seed 003): bots CRUD with filters, whitelisted sort and offset
pagination; UNIQUE -> Conflict and 0 rows -> NotFound; versioned soul saves that move the
pointer in the same transaction; API keys stored as hashes."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from bastion.errors import Conflict, NotFound
from bastion.store import WriteTx
from examples.bots.bot.types import Bot, BotChanges, BotStatus, NewBot
from examples.bots.soul.types import SoulVersion
from examples.bots.store import BotStore


def _get(store: BotStore, bot_id: str) -> Bot:
    bot = store.bots.get(bot_id)
    assert bot is not None
    return bot


def _seed(store: BotStore) -> list[Bot]:
    specs: list[tuple[str, str, BotStatus, str | None]] = [
        ("alpha", "Alpha", "active", "support"),
        ("bravo", "Bravo", "disabled", "support"),
        ("charlie", "Charlie", "active", "sales"),
        ("delta", "Delta", "archived", None),
        ("echo", "Echo", "active", "support"),
    ]
    return [
        store.bots.create(NewBot(slug=s, name=n, status=st, category=c)) for s, n, st, c in specs
    ]


def test_crud_round_trip_returns_frozen_dataclasses(store: BotStore) -> None:
    bot = store.bots.create(NewBot(slug="helper", name="Helper", description="answers"))
    assert isinstance(bot, Bot)
    with pytest.raises(dataclasses.FrozenInstanceError):
        bot.name = "x"  # type: ignore[misc]
    assert store.bots.get(bot.id) == bot
    assert store.bots.get_by_slug("helper") == bot
    updated = store.bots.update(bot.id, BotChanges(name="Helper 2", status="disabled"))
    assert (updated.name, updated.status, updated.description) == (
        "Helper 2",
        "disabled",
        "answers",
    )
    assert updated.updated_at >= bot.updated_at
    store.bots.delete(bot.id)
    assert store.bots.get(bot.id) is None


def test_unique_slug_is_a_conflict(store: BotStore) -> None:
    first = store.bots.create(NewBot(slug="dup", name="One"))
    with pytest.raises(Conflict):
        store.bots.create(NewBot(slug="dup", name="Two"))
    other = store.bots.create(NewBot(slug="other", name="Other"))
    with pytest.raises(Conflict):
        store.bots.update(other.id, BotChanges(slug="dup"))
    assert store.bots.get_by_slug("dup") == first


def test_zero_rows_on_update_or_delete_is_not_found(store: BotStore) -> None:
    with pytest.raises(NotFound, match="no-such-id"):
        store.bots.update("no-such-id", BotChanges(name="x"))
    with pytest.raises(NotFound):
        store.bots.delete("no-such-id")
    with pytest.raises(NotFound):
        store.bots.touch("no-such-id")


def test_list_filters_by_status_and_category(store: BotStore) -> None:
    _seed(store)
    active = store.bots.list(status="active")
    assert {b.slug for b in active} == {"alpha", "charlie", "echo"}
    assert active.total == 3
    support = store.bots.list(status="active", category="support")
    assert {b.slug for b in support} == {"alpha", "echo"}
    assert store.bots.list(category="nothing").total == 0


def test_list_sorts_by_whitelisted_keys_only(store: BotStore) -> None:
    _seed(store)
    by_name = [b.slug for b in store.bots.list(sort="name", direction="desc")]
    assert by_name == ["echo", "delta", "charlie", "bravo", "alpha"]
    by_slug = [b.slug for b in store.bots.list(sort="slug")]
    assert by_slug == ["alpha", "bravo", "charlie", "delta", "echo"]
    # SQL injection through the sort key is impossible: it is looked up, never interpolated.
    with pytest.raises(ValueError, match="allowed keys: created_at, name, slug, updated_at"):
        store.bots.list(sort="name; DROP TABLE bots")
    with pytest.raises(ValueError, match="cannot sort by 'description'"):
        store.bots.list(sort="description")
    with pytest.raises(ValueError, match="direction"):
        store.bots.list(sort="name", direction="sideways")
    assert store.db.scalar("SELECT count(*) FROM bots") == 5


def test_offset_pagination_with_total(store: BotStore) -> None:
    _seed(store)
    pages = [store.bots.list(sort="slug", limit=2, offset=o) for o in (0, 2, 4)]
    assert [[b.slug for b in p] for p in pages] == [
        ["alpha", "bravo"],
        ["charlie", "delta"],
        ["echo"],
    ]
    assert {p.total for p in pages} == {5}
    with pytest.raises(ValueError, match="limit"):
        store.bots.list(limit=0)


def test_soul_save_inserts_version_n_plus_1_and_moves_the_pointer(store: BotStore) -> None:
    bot = store.bots.create(NewBot(slug="soulful", name="Soulful"))
    assert store.souls.current(bot.id) is None
    v1 = store.souls.save(bot.id, "You are kind.", "first")
    v2 = store.souls.save(bot.id, "You are kind and brief.", "shorter")
    assert (v1.version, v2.version) == (1, 2)
    assert store.souls.current(bot.id) == v2
    assert _get(store, bot.id).version_count == 2
    assert [s.version for s in store.souls.history(bot.id)] == [2, 1]
    assert store.souls.get(bot.id, 1) == v1
    assert v1.intact
    assert v2.intact


def test_soul_save_is_all_or_nothing_when_the_pointer_update_fails(store: BotStore) -> None:
    bot = store.bots.create(NewBot(slug="fragile", name="Fragile"))
    store.souls.save(bot.id, "v1")
    # Injected failure at the second step (moving the pointer), by the database itself.
    if store.db.dialect.name == "sqlite":
        trigger = (
            "CREATE TRIGGER fail_pointer BEFORE UPDATE OF version_count ON bots "
            "WHEN NEW.version_count = 2 BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
    else:
        trigger = (
            "CREATE FUNCTION fail_pointer() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql; "
            "CREATE TRIGGER fail_pointer BEFORE UPDATE OF version_count ON bots FOR EACH ROW "
            "WHEN (NEW.version_count = 2) EXECUTE FUNCTION fail_pointer()"
        )
    store.db.write(lambda tx: tx.script(trigger))
    with pytest.raises(Exception, match="injected failure"):
        store.souls.save(bot.id, "v2")
    assert [s.version for s in store.souls.history(bot.id)] == [1]  # no orphan version 2 row
    current = store.souls.current(bot.id)
    assert current is not None
    assert current.content == "v1"


def test_concurrent_soul_saves_produce_a_gapless_history(store: BotStore) -> None:
    bot = store.bots.create(NewBot(slug="busy", name="Busy"))
    errors: list[BaseException] = []

    def saver(n: int) -> None:
        try:
            for i in range(25):
                store.souls.save(bot.id, f"thread {n} save {i}")
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=saver, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    versions = sorted(s.version for s in store.souls.history(bot.id))
    assert versions == list(range(1, 101))
    assert _get(store, bot.id).version_count == 100


def test_readers_never_see_a_pointer_without_its_version(store: BotStore) -> None:
    """A reader's snapshot holds the pointer and the version row together, or neither."""
    bot = store.bots.create(NewBot(slug="watched", name="Watched"))
    store.souls.save(bot.id, "v1")
    done = threading.Event()
    seen: list[SoulVersion | None] = []

    def reader() -> None:
        while True:  # at least one read, even if the saves finished first
            seen.append(store.souls.current(bot.id))
            if done.is_set():
                break

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(2, 60):
            store.souls.save(bot.id, f"v{i}")
    finally:
        done.set()
        thread.join(timeout=60)
    assert seen
    assert all(s is not None for s in seen)


def test_api_keys_are_stored_as_hashes_and_verified(store: BotStore) -> None:
    key, plain = store.api_keys.create("ci")
    assert plain.reveal().startswith("bot_")
    assert plain.reveal() not in repr(plain)
    assert store.api_keys.verify(plain).id == key.id
    rows = store.db.query("SELECT key_hash, key_prefix FROM api_keys")
    assert plain.reveal() not in str(rows)
    store.api_keys.revoke(key.id)
    with pytest.raises(NotFound):
        store.api_keys.verify(plain)
    with pytest.raises(NotFound):
        store.api_keys.revoke(key.id)  # already revoked: 0 rows


def test_a_unit_can_compose_repos_in_one_transaction(store: BotStore) -> None:
    """Create a bot and its first soul atomically (what BotService.create does)."""
    bot = store.bots.create(NewBot(slug="composed", name="Composed"))

    def unit(tx: WriteTx) -> int:
        version = store.souls.save_tx(tx, bot.id, "first soul")
        tx.execute("UPDATE bots SET description = 'with soul' WHERE id = ?", (bot.id,))
        return version

    assert store.db.write(unit) == 1
    assert _get(store, bot.id).description == "with soul"
