"""Settings: typed get with default, set, delete, list by prefix, one event per write."""

from __future__ import annotations

import json

import pytest

from bastion.domains.events import EventsRepo
from bastion.domains.settings import SettingsRepo, read_setting
from bastion.domains.settings.model import MAX_DEPTH, MAX_VALUE_BYTES
from bastion.errors import InvalidValue, NotFound, PlaintextCredential, SettingUnreadable
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


OPENAI = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"


def test_a_credential_is_refused_before_anything_is_written(db: Database) -> None:
    s = SettingsRepo(db)
    events_before = db.scalar("SELECT count(*) FROM events")
    for key, value in (
        ("openai.api_key", OPENAI),
        ("integrations", {"openai": {"api_key": OPENAI}}),
        ("db.password", "P@ssw0rd-2024!"),
    ):
        with pytest.raises(PlaintextCredential) as caught:
            s.set(key, value)
        assert key in caught.value.message
        assert OPENAI not in caught.value.message + caught.value.hint
        assert "bastion secrets set" in caught.value.hint
        assert s.get(key) is None
    assert db.scalar("SELECT count(*) FROM events") == events_before
    # Nothing of the value reached the file either.
    db.run_outside_transaction(lambda tx: tx.scalar("PRAGMA wal_checkpoint(TRUNCATE)"))
    assert OPENAI.encode() not in db.path.read_bytes()
    # The reference is what belongs there.
    s.set("openai.api_key", "secret:global/openai.api_key")


def test_allow_plaintext_stores_a_false_positive(db: Database) -> None:
    s = SettingsRepo(db)
    with pytest.raises(PlaintextCredential):
        s.set("demo.token", "build-7Fq2Xz9L")
    s.set("demo.token", "build-7Fq2Xz9L", allow_plaintext=True)
    assert s.get("demo.token") == "build-7Fq2Xz9L"
    with pytest.raises(PlaintextCredential):
        db.write(lambda tx: SettingsRepo.set_tx(tx, "k.token", OPENAI))
    db.write(lambda tx: SettingsRepo.set_tx(tx, "k.token", OPENAI, allow_plaintext=True))


# --- value limits (issue #15 §2): one rule for the library, the CLI and the API ------------


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def _raw_rows(db: Database) -> list[tuple[object, ...]]:
    return db.query("SELECT key, value FROM settings")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (_nested(MAX_DEPTH + 1), f"nested deeper than {MAX_DEPTH} levels"),
        (_nested(5000), f"nested deeper than {MAX_DEPTH} levels"),
        ({"a": {"b": _nested(MAX_DEPTH)}}, f"nested deeper than {MAX_DEPTH} levels"),
        ("x" * MAX_VALUE_BYTES, f"the limit is {MAX_VALUE_BYTES}"),
        (["é" * (MAX_VALUE_BYTES // 2)], f"the limit is {MAX_VALUE_BYTES}"),  # bytes, not chars
        ("\ud800", "not UTF-8"),
        (float("nan"), "not JSON-serializable"),
        ({1: object()}, "not JSON-serializable"),
        (None, "null is not a value"),
    ],
    ids=[
        "depth+1",
        "depth-5000",
        "deep-in-object",
        "size",
        "size-utf8",
        "surrogate",
        "nan",
        "object",
        "null",
    ],
)
def test_a_value_outside_the_limits_is_refused_before_anything_is_written(
    db: Database, value: object, message: str
) -> None:
    s = SettingsRepo(db)
    events = EventsRepo(db)
    before = events.latest_id()
    with pytest.raises(InvalidValue, match=message):
        s.set("k", value)
    assert _raw_rows(db) == []
    assert events.latest_id() == before


def test_a_value_that_contains_itself_is_refused(db: Database) -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(InvalidValue, match="contains itself"):
        SettingsRepo(db).set("k", loop)
    assert _raw_rows(db) == []


def test_values_at_the_limits_are_stored(db: Database) -> None:
    s = SettingsRepo(db)
    s.set("deep", _nested(MAX_DEPTH))
    s.set("big", "x" * (MAX_VALUE_BYTES - 2))  # + two quotes
    assert s.get("deep") == _nested(MAX_DEPTH)
    assert len(s.get("big")) == MAX_VALUE_BYTES - 2


def test_a_stored_value_past_the_limits_reads_as_an_error_never_a_crash(db: Database) -> None:
    s = SettingsRepo(db)
    s.set("a", 1)
    # Rows an older version (or another tool) wrote: SQLite's json_valid accepts them.
    for key, text in (("b", json.dumps(_nested(100))), ("c", "[" * 990 + "1" + "]" * 990)):
        db.write(
            lambda tx, k=key, t=text: tx.execute(
                "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, 1.0)", (k, t)
            )
        )
    s.set("d", 2)
    rows = s.list()
    assert [(r.key, r.value, r.error is None) for r in rows] == [
        ("a", 1, True),
        ("b", None, False),
        ("c", None, False),
        ("d", 2, True),
    ]
    assert rows[1].to_dict()["error"].startswith("setting 'b' holds a value that cannot be read")
    assert "error" not in rows[0].to_dict()
    for key in ("b", "c"):
        with pytest.raises(SettingUnreadable, match=f"setting '{key}'"):
            s.get(key)
        with pytest.raises(SettingUnreadable):
            s.get_setting(key)
        with pytest.raises(SettingUnreadable):
            read_setting(db.path, key)
