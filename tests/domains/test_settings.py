"""Settings: typed get with default, set, delete, list by prefix, one event per write."""

from __future__ import annotations

import pytest

from bastion.domains.events import EventsRepo
from bastion.domains.settings import SettingsRepo
from bastion.errors import NotFound
from bastion.store import Database


def test_set_get_typed_and_default(db: Database) -> None:
    s = SettingsRepo(db)
    s.set("ui.theme", "dark")
    s.set("retention.days", 30)
    s.set("features", {"beta": True, "list": [1, 2]})
    assert s.get("ui.theme") == "dark"
    assert s.get("retention.days", type_=int) == 30
    assert s.get("retention.days", type_=float) == 30
    assert s.get("features") == {"beta": True, "list": [1, 2]}
    assert s.get("missing", "fallback") == "fallback"
    assert s.get("missing", 5, type_=int) == 5
    with pytest.raises(ValueError, match=r"setting 'ui\.theme' holds str 'dark', not int"):
        s.get("ui.theme", type_=int)
    s.set("flag", True)
    with pytest.raises(ValueError, match="holds bool"):
        s.get("flag", type_=int)


def test_overwrite_updates_value_and_timestamp(db: Database) -> None:
    s = SettingsRepo(db)
    first = s.set("k", 1, ts=100.0)
    second = s.set("k", 2, ts=200.0)
    assert (first.updated_at, second.updated_at) == (100.0, 200.0)
    assert s.get_setting("k").value == 2
    assert s.get_setting("k").updated_at == 200.0


def test_list_by_prefix_is_ordered_and_exact(db: Database) -> None:
    s = SettingsRepo(db)
    for key in ("ui.b", "ui.a", "uix", "api.port", "ui"):
        s.set(key, key)
    assert [x.key for x in s.list("ui.")] == ["ui.a", "ui.b"]
    assert [x.key for x in s.list("ui")] == ["ui", "ui.a", "ui.b", "uix"]
    assert [x.key for x in s.list()] == ["api.port", "ui", "ui.a", "ui.b", "uix"]


def test_delete_and_not_found(db: Database) -> None:
    s = SettingsRepo(db)
    s.set("k", "v")
    s.delete("k")
    assert s.get("k") is None
    with pytest.raises(NotFound, match="setting 'k' is not set"):
        s.delete("k")
    with pytest.raises(NotFound):
        s.get_setting("k")


def test_bad_keys_and_values_are_refused(db: Database) -> None:
    s = SettingsRepo(db)
    with pytest.raises(ValueError, match="1-256 characters"):
        s.set("", 1)
    with pytest.raises(ValueError, match="delete the key instead"):
        s.set("k", None)
    with pytest.raises(ValueError, match="not JSON-serializable"):
        s.set("k", {1, 2})
    assert s.list() == []


def test_every_write_emits_one_event_naming_the_key_never_the_value(db: Database) -> None:
    sentinel = "SENTINEL-value-7f3a9c"
    s = SettingsRepo(db)
    s.set("webhook.url", sentinel)
    s.set("webhook.url", sentinel + "2")
    s.delete("webhook.url")
    events = EventsRepo(db).query(kind="setting.changed").items
    assert [(e.subject, (e.data or {})["action"]) for e in events] == [
        ("webhook.url", "set"),
        ("webhook.url", "set"),
        ("webhook.url", "delete"),
    ]
    dumped = db.query("SELECT * FROM events")
    assert sentinel not in repr(dumped)


def test_a_failed_set_leaves_no_event(db: Database) -> None:
    s = SettingsRepo(db)

    def broken(tx: object) -> None:
        from bastion.store import WriteTx

        assert isinstance(tx, WriteTx)
        SettingsRepo.set_tx(tx, "a", 1)
        raise RuntimeError("caller failed after set")

    with pytest.raises(RuntimeError):
        db.write(broken)  # type: ignore[arg-type]
    assert s.get("a") is None
    assert EventsRepo(db).query(kind="setting.changed").items == ()
