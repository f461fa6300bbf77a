"""The repository toolkit on a real database: filters over declared columns, whitelisted sort,
keyset and offset pagination, JSON columns, versioned saves, Conflict/NotFound mapping."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import pickle
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.errors import Conflict, NotFound
from bastion.store import Database, WriteTx
from bastion.store.repo import (
    Page,
    Sort,
    Where,
    decode_cursor,
    encode_cursor,
    expect_changed,
    from_json,
    json_column,
    paginate,
    row_factory,
    save_version,
    to_json,
)


@dataclasses.dataclass(frozen=True)
class Item:
    id: int
    name: str
    meta: dict[str, Any] | None = json_column()


ITEM = row_factory(Item, ("id", "name", "meta"))

COLUMNS = {"id": "id", "name": "name", "kind": "kind", "score": "score"}
SORT = Sort({"id": "id", "name": "name", "score": "score"}, default="id")


@pytest.fixture
def db(tmp_path: Path) -> Generator[Database, None, None]:
    database = Database.open(tmp_path / "repo.db")

    def schema(tx: WriteTx) -> None:
        tx.execute(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT, score INTEGER, meta TEXT)"
        )
        tx.executemany(
            "INSERT INTO items (name, kind, score, meta) VALUES (?, ?, ?, ?)",
            [
                (f"item{i:02d}", "even" if i % 2 == 0 else "odd", i % 5, to_json({"i": i}))
                for i in range(23)
            ],
        )
        tx.execute(
            "CREATE TABLE bots (id INTEGER PRIMARY KEY, name TEXT NOT NULL, current_version INTEGER)"
        )
        tx.execute(
            "CREATE TABLE souls (bot_id INTEGER NOT NULL REFERENCES bots (id), version INTEGER NOT NULL, "
            "body TEXT NOT NULL, UNIQUE (bot_id, version))"
        )
        tx.execute("INSERT INTO bots (id, name) VALUES (1, 'ada')")

    database.write(schema)
    yield database
    database.close()


def _names(page: Page[tuple[object, ...]]) -> list[object]:
    return [row[1] for row in page.items]


def test_where_builds_only_given_filters_over_declared_columns(db: Database) -> None:
    w = Where(COLUMNS).eq("kind", "even").ge("score", 3).lt("score", None).contains("name", "item1")
    assert w.sql == "WHERE kind = ? AND score >= ? AND name LIKE ? ESCAPE '\\'"
    rows = db.query(f"SELECT name FROM items {w.sql} ORDER BY id", w.params)
    assert rows == [("item14",), ("item18",)]
    assert Where(COLUMNS).eq("kind", None).sql == ""
    with pytest.raises(
        ValueError, match="cannot filter on 'secret'; allowed: id, kind, name, score"
    ):
        Where(COLUMNS).eq("secret", 1)
    with pytest.raises(ValueError, match="allowed"):
        Where(COLUMNS).match({"kind": "odd", "name; DROP TABLE items": 1})


def test_like_wildcards_in_user_text_are_literal(db: Database) -> None:
    db.write(lambda tx: tx.execute("INSERT INTO items (name) VALUES ('100%_done')"))
    w = Where(COLUMNS).contains("name", "%_")
    assert db.query(f"SELECT name FROM items {w.sql}", w.params) == [("100%_done",)]
    assert Where(COLUMNS).in_("kind", []).sql == "WHERE 0"


def test_sort_accepts_only_whitelisted_keys_and_directions() -> None:
    assert SORT.clause("score", "desc") == "ORDER BY score DESC, id DESC"
    assert SORT.clause(None) == "ORDER BY id ASC"
    with pytest.raises(ValueError, match="cannot sort by 'meta'; allowed keys: id, name, score"):
        SORT.clause("meta")
    with pytest.raises(ValueError, match="direction must be 'asc' or 'desc'"):
        SORT.clause("name", "sideways; DROP TABLE items")


def test_keyset_pagination_walks_every_row_once_in_order(db: Database) -> None:
    seen: list[object] = []
    cursor = None
    pages = 0
    while True:
        page = paginate(
            db,
            select="id, name",
            table="items",
            where=Where(COLUMNS).eq("kind", "odd"),
            sort=SORT,
            sort_key="score",
            direction="desc",
            make=tuple,
            limit=4,
            cursor=cursor,
        )
        seen.extend(_names(page))
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    expected = db.query("SELECT name FROM items WHERE kind = 'odd' ORDER BY score DESC, id DESC")
    assert seen == [r[0] for r in expected]
    assert pages == 3  # 11 odd rows, 4 per page


def test_offset_pagination_reports_the_total(db: Database) -> None:
    page = paginate(
        db,
        select="id, name",
        table="items",
        where=Where(COLUMNS),
        sort=SORT,
        sort_key="name",
        direction="asc",
        make=tuple,
        limit=5,
        offset=20,
    )
    assert _names(page) == ["item20", "item21", "item22"]
    assert page.total == 23
    assert page.offset == 20
    with pytest.raises(ValueError, match="limit must be at least 1"):
        paginate(
            db,
            select="id",
            table="items",
            where=Where(COLUMNS),
            sort=SORT,
            sort_key=None,
            direction=None,
            make=tuple,
            limit=0,
        )


def test_cursors_are_opaque_and_validated() -> None:
    assert decode_cursor(encode_cursor([3, "x"]), 2) == [3, "x"]
    with pytest.raises(ValueError, match="invalid pagination cursor"):
        decode_cursor("not-a-cursor!", 2)
    with pytest.raises(ValueError, match="invalid pagination cursor"):
        decode_cursor(encode_cursor([1]), 2)


def _forged(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ('[{"a":1},1]', "holds an object"),
        ("[[1],1]", "holds an array"),
        ("[null,1]", "holds null"),
        ("[true,1]", "holds a boolean"),
        (f"[{2**80},1]", "outside SQLite's 64-bit range"),
        (f"[1,{-(2**63) - 1}]", "outside SQLite's 64-bit range"),
        ("[NaN,1]", "NaN is not a keyset value"),
        ("[Infinity,1]", "Infinity is not a keyset value"),
        ("[1e400,1]", "not finite"),
        ('["x",1]', "a str where a int belongs"),
        ("[1, 2.5]", "a float where a int belongs"),
        ("[" * 100_000, "not a cursor this list gave out"),
    ],
)
def test_forged_cursors_are_value_errors_naming_the_cursor(
    db: Database, raw: str, why: str
) -> None:
    """A cursor is caller input: each value is type- and range-checked before it is bound.
    (Before, a dict reached the driver as a TypeError and 2**80 as an OverflowError: 500s.)"""
    with pytest.raises(ValueError, match=r"^cursor: invalid pagination cursor") as caught:
        _page(db, cursor=_forged(raw))
    assert why in str(caught.value)


def _page(db: Database, *, cursor: str | None, sort_key: str = "score") -> Page[tuple[Any, ...]]:
    return paginate(
        db,
        select="id, name",
        table="items",
        where=Where(COLUMNS),
        sort=TYPED_SORT,
        sort_key=sort_key,
        direction="asc",
        make=tuple,
        limit=3,
        cursor=cursor,
    )


TYPED_SORT = Sort(
    {"id": "id", "name": "name", "score": "score"},
    default="id",
    types={"id": int, "name": str, "score": int},
)

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cursor=st.one_of(
        st.text(max_size=40),
        st.lists(_json, max_size=3).map(lambda v: _forged(json.dumps(v))),
        _json.map(lambda v: _forged(json.dumps(v))),
    ),
    sort_key=st.sampled_from(["id", "name", "score"]),
)
def test_any_cursor_is_a_page_or_a_value_error(db: Database, cursor: str, sort_key: str) -> None:
    """The class, not the instances: whatever string comes back as a cursor, paginate
    answers a page or a ValueError naming the cursor, never a driver error."""
    try:
        page = _page(db, cursor=cursor, sort_key=sort_key)
    except ValueError as err:
        refused = str(err)
    else:
        assert len(page) <= 3
        return
    assert refused.startswith("cursor: invalid pagination cursor")


def test_a_sort_declares_types_only_for_its_keys() -> None:
    with pytest.raises(ValueError, match=r"Sort\.types"):
        Sort({"id": "id"}, default="id", types={"nope": int})
    with pytest.raises(ValueError, match=r"Sort\.types"):
        Sort({"id": "id"}, default="id", types={"id": bytes})


def test_json_columns_round_trip_and_refuse_unserializable(db: Database) -> None:
    assert from_json(db.scalar("SELECT meta FROM items WHERE name = 'item03'")) == {"i": 3}
    assert to_json(None) is None
    assert from_json(None) is None
    assert to_json({"é": [1, 2.5, True]}) == '{"é":[1,2.5,true]}'
    with pytest.raises(ValueError, match="details is not JSON-serializable"):
        to_json({"x": object()}, field="details")
    with pytest.raises(ValueError, match="not JSON-serializable"):
        to_json(float("nan"))


def test_unique_violation_is_conflict_and_zero_rows_is_not_found(db: Database) -> None:
    with pytest.raises(Conflict) as err:
        db.write(lambda tx: tx.execute("INSERT INTO items (name) VALUES ('item01')"))
    assert err.value.details["columns"] == "items.name"
    with pytest.raises(NotFound, match="item 999 does not exist"):
        db.write(
            lambda tx: expect_changed(
                tx.execute("UPDATE items SET score = 1 WHERE id = 999"), "item 999"
            )
        )
    assert expect_changed(1, "x") == 1


def test_versioned_save_inserts_next_version_and_moves_pointer_atomically(db: Database) -> None:
    def save(body: str, bot: int = 1) -> int:
        return db.write(
            lambda tx: save_version(
                tx,
                versions_table="souls",
                owner_column="bot_id",
                owner_id=bot,
                values={"body": body},
                pointer_table="bots",
                pointer_column="current_version",
            )
        )

    assert save("v1 text") == 1
    assert save("v2 text") == 2
    assert db.query("SELECT version, body FROM souls ORDER BY version") == [
        (1, "v1 text"),
        (2, "v2 text"),
    ]
    assert db.scalar("SELECT current_version FROM bots WHERE id = 1") == 2
    # An owner without a pointer row: NotFound, and the inserted version rolls back with it.
    db.write(
        lambda tx: tx.execute(
            "CREATE TABLE drafts (owner INTEGER NOT NULL, version INTEGER NOT NULL, body TEXT, UNIQUE (owner, version))"
        )
    )
    with pytest.raises(NotFound, match="bots id=2 does not exist"):
        db.write(
            lambda tx: save_version(
                tx,
                versions_table="drafts",
                owner_column="owner",
                owner_id=2,
                values={"body": "x"},
                pointer_table="bots",
                pointer_column="current_version",
            )
        )
    assert db.scalar("SELECT count(*) FROM drafts") == 0
    with pytest.raises(ValueError, match="plain SQL identifier"):
        db.write(
            lambda tx: save_version(
                tx,
                versions_table="souls",
                owner_column="bot_id",
                owner_id=1,
                values={"body; --": "x"},
                pointer_table="bots",
                pointer_column="current_version",
            )
        )


def test_row_factory_rows_equal_init_built_rows_in_every_way(db: Database) -> None:
    row = db.query_one("SELECT id, name, meta FROM items WHERE name = 'item03'")
    assert row is not None
    built = ITEM(row)
    made = Item(row[0], "item03", {"i": 3})
    assert built == made
    assert repr(built) == repr(made) == "Item(id=4, name='item03', meta={'i': 3})"
    assert dataclasses.asdict(built) == {"id": 4, "name": "item03", "meta": {"i": 3}}
    assert dataclasses.replace(built, name="x") == Item(4, "x", {"i": 3})
    assert pickle.loads(pickle.dumps(ITEM(row))) == made
    assert copy.deepcopy(ITEM(row)) == made
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.meta = {}  # type: ignore[misc]
    assert Item(1, "n").meta is None  # the declared default
    assert ITEM((5, "n", None)).meta is None  # SQL NULL


def test_json_column_decodes_once_on_first_read_and_keeps_the_value(db: Database) -> None:
    built = ITEM((1, "n", '{"a": [1, 2]}'))
    assert "meta" not in vars(built)  # not decoded by building the row
    first = built.meta
    assert first == {"a": [1, 2]}
    assert built.meta is first  # decoded once, then kept
    with pytest.raises(ValueError, match="Expecting"):
        _ = ITEM((1, "n", "{not json")).meta  # a damaged column fails loudly when read


def test_row_factory_refuses_what_it_cannot_build() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Slotted:
        id: int

    @dataclasses.dataclass
    class Mutable:
        id: int

    with pytest.raises(TypeError, match="without slots"):
        row_factory(Slotted, ("id",))
    with pytest.raises(TypeError, match="frozen dataclass"):
        row_factory(Mutable, ("id",))
    with pytest.raises(TypeError, match="must name each field"):
        row_factory(Item, ("id", "name"))
    with pytest.raises(TypeError, match="must name each field"):
        row_factory(Item, ("id", "name", "meta", "id"))
