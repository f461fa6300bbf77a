"""The repository toolkit: what per-domain ``queries.py``/``repo.py`` modules are built from.

A domain declares its SQL in ``queries.py`` and its typed functions in ``repo.py``; rows become
frozen dataclasses there and nowhere else. This module supplies the parts every domain needs:

* :class:`Where`: a WHERE clause built over *declared* columns only (an unknown column is a
  ``ValueError`` naming the allowed ones, so user input can never become SQL);
* :class:`Sort`: ORDER BY from a whitelisted key and a direction;
* :class:`Page` plus :func:`encode_cursor`/:func:`decode_cursor`: keyset (cursor) pagination,
  and offset pagination with a total count;
* :func:`to_json`/:func:`from_json`: JSON columns; :func:`json_column` and :func:`row_factory`
  for the hot read path: rows built without running ``__init__``, JSON decoded on first use;
* :func:`expect_changed`: 0 rows changed by an update/delete by id -> ``NotFound``
  (UNIQUE violations already arrive as ``Conflict`` from the engine);
* :func:`save_version`: insert version N+1 and move the "current" pointer in one transaction.

Everything here is plain string building plus the engine's ``tx`` handles: no ORM, no
reflection, nothing between a repo and SQLite that costs time on the hot path.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from bastion.errors import NotFound
from bastion.store.engine import Database, ReadTx, Row, WriteTx

__all__ = [
    "JsonColumn",
    "Page",
    "Repo",
    "Sort",
    "Where",
    "decode_cursor",
    "encode_cursor",
    "expect_changed",
    "from_json",
    "json_column",
    "paginate",
    "row_factory",
    "save_version",
    "to_json",
]

T = TypeVar("T")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"{name!r} is not a plain SQL identifier")
    return name


# --- JSON columns ------------------------------------------------------------------------------


def to_json(value: Any, *, field: str = "value") -> str | None:
    """Serialize for a JSON column (``None`` stays SQL NULL). Compact, key order kept."""
    if value is None:
        return None
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{field} is not JSON-serializable: {err}") from err


_decode = json.JSONDecoder().decode


def from_json(text: str | bytes | None) -> Any:
    """Parse a JSON column (SQL NULL -> ``None``). On every typed read: kept minimal."""
    if text is None:
        return None
    return _decode(text if isinstance(text, str) else text.decode("utf-8"))


class JsonColumn:
    """A dataclass field over a JSON column, decoded the first time it is read.

    A point lookup returns in ~2 us; ``json.loads`` of even a small object costs ~1 us of
    that again, spent whether or not the caller ever looks at the column. Rows built by
    :func:`row_factory` keep the column's text; the first read of the field decodes it once
    and keeps the value. Rows built by ``__init__`` hold the value as given. Either way the
    row reads, compares, prints and converts (``dataclasses.asdict``) as if the field were
    plain: the descriptor is a data descriptor, so every access goes through :meth:`__get__`.
    """

    __slots__ = ("default", "name", "raw_key")

    def __init__(self, default: Any = None) -> None:
        self.default = default
        self.name = ""
        self.raw_key = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.raw_key = f"_{name}_json"

    def __get__(self, obj: object | None, owner: type | None = None) -> Any:
        if obj is None:
            return self.default  # what dataclasses reads as the field's default
        values = obj.__dict__
        try:
            return values[self.name]
        except KeyError:
            value = from_json(values.get(self.raw_key))
            values[self.name] = value
            return value

    def __set__(self, obj: object, value: Any) -> None:
        # Reached only from the dataclass's own __init__ (object.__setattr__): a frozen
        # dataclass refuses assignment before any descriptor sees it.
        obj.__dict__[self.name] = value


def json_column(default: Any = None) -> Any:
    """Declare a frozen dataclass field over a JSON column (see :class:`JsonColumn`)::

        details: dict[str, Any] | None = json_column()

    Typed ``Any`` so that the field keeps its declared type for mypy.
    """
    return JsonColumn(default)


def row_factory(cls: type[T], columns: Sequence[str]) -> Callable[[Row], T]:
    """A function turning a row (in ``columns`` order) into ``cls`` without calling its
    ``__init__``: the values go straight into the instance, a :func:`json_column` field
    keeps its text until first read.

    ``cls`` must be a frozen dataclass without ``__slots__`` (the values live in the
    instance ``__dict__``), and ``columns`` must name each of its fields once. Building a
    frozen dataclass through ``__init__`` costs ~0.6 us (one ``object.__setattr__`` per
    field); this costs ~0.2 us, which is what lets a typed get-by-id stay near a raw
    ``fetchone``. The function's body is generated once, as ``dataclasses`` does for
    ``__init__``: one tuple-unpacking assignment into the instance dict.
    """
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"row_factory needs a frozen dataclass, not {cls!r}")
    if "__slots__" in cls.__dict__:
        raise TypeError(f"row_factory needs {cls.__name__} without slots=True")
    fields = [f.name for f in dataclasses.fields(cls)]
    if sorted(columns) != sorted(fields):
        raise TypeError(
            f"row_factory({cls.__name__}): columns {list(columns)} must name each field of "
            f"{fields} once"
        )
    keys = []
    for name in columns:
        attr = cls.__dict__.get(name)
        keys.append(attr.raw_key if isinstance(attr, JsonColumn) else name)
    targets = ", ".join(f"d[{key!r}]" for key in keys)
    source = (
        "def build(row):\n"
        "    obj = new(cls)\n"
        "    d = obj.__dict__\n"
        f"    {targets}, = row\n"
        "    return obj\n"
    )
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls}
    exec(source, namespace)  # noqa: S102 - generated from field names checked above
    build: Callable[[Row], T] = namespace["build"]
    build.__qualname__ = f"row_factory.<{cls.__name__}>"
    return build


# --- filtering ---------------------------------------------------------------------------------


class Where:
    """A WHERE clause over declared columns. Methods chain; ``None`` values add nothing, so
    optional filters read as one line each::

        w = Where(COLUMNS).eq("source", source).ge("ts", since).lt("ts", until)
        rows = db.query(f"SELECT ... FROM logs {w.sql} ORDER BY id", w.params)

    ``columns`` maps a public name to its SQL expression (usually the same column name).
    """

    __slots__ = ("_columns", "_parts", "params")

    def __init__(self, columns: Mapping[str, str] | Iterable[str]) -> None:
        self._columns: Mapping[str, str] = (
            columns if isinstance(columns, Mapping) else {c: _ident(c) for c in columns}
        )
        self._parts: list[str] = []
        self.params: list[Any] = []

    def _col(self, name: str) -> str:
        try:
            return self._columns[name]
        except KeyError:
            allowed = ", ".join(sorted(self._columns))
            raise ValueError(f"cannot filter on {name!r}; allowed: {allowed}") from None

    def _add(self, name: str, op: str, value: Any) -> Where:
        if value is not None:
            self._parts.append(f"{self._col(name)} {op} ?")
            self.params.append(value)
        return self

    def eq(self, name: str, value: Any) -> Where:
        """Add ``name = value``; returns the builder."""
        return self._add(name, "=", value)

    def ne(self, name: str, value: Any) -> Where:
        """Add ``name != value``; returns the builder."""
        return self._add(name, "!=", value)

    def ge(self, name: str, value: Any) -> Where:
        """Add ``name >= value``; returns the builder."""
        return self._add(name, ">=", value)

    def gt(self, name: str, value: Any) -> Where:
        """Add ``name > value``; returns the builder."""
        return self._add(name, ">", value)

    def le(self, name: str, value: Any) -> Where:
        """Add ``name <= value``; returns the builder."""
        return self._add(name, "<=", value)

    def lt(self, name: str, value: Any) -> Where:
        """Add ``name < value``; returns the builder."""
        return self._add(name, "<", value)

    def in_(self, name: str, values: Iterable[Any] | None) -> Where:
        """Add ``name IN (values)`` (None: no condition; empty: matches nothing)."""
        if values is None:
            return self
        items = list(values)
        if not items:
            self._parts.append("1 = 0")  # IN () matches nothing (a boolean on both engines)
            return self
        self._parts.append(f"{self._col(name)} IN ({', '.join('?' * len(items))})")
        self.params.extend(items)
        return self

    def contains(self, name: str, text: str | None) -> Where:
        """Case-insensitive substring match (``LIKE`` with ``%``/``_`` escaped). Both sides
        are lowered: SQLite's LIKE ignores case, PostgreSQL's does not."""
        if text is None:
            return self
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        self._parts.append(f"lower({self._col(name)}) LIKE lower(?) ESCAPE '\\'")
        self.params.append(f"%{escaped}%")
        return self

    def substring(self, name: str, text: str | None) -> Where:
        """:meth:`contains` for a column that may hold NUL characters (SQLite only):
        ``instr(lower(col), lower(?)) > 0``, the same ASCII case-insensitive match.

        SQLite's LIKE reads the value and the pattern only up to their first NUL, so with
        :meth:`contains` a value ``"abc\\0def"`` is not found by ``"def"``, and a text
        ``"c\\0d"`` matches every value ending in ``c``. ``instr`` and ``lower`` read the
        whole value. Text a program printed (a log line) can hold a NUL; PostgreSQL's text
        cannot, so there :meth:`contains` is already right."""
        if text is None:
            return self
        self._parts.append(f"instr(lower({self._col(name)}), lower(?)) > 0")
        self.params.append(text)
        return self

    def fts(self, name: str, query: str | None) -> Where:
        """Add ``name MATCH query``: ``name`` is an FTS5 table, ``query`` in its query syntax
        (build it from user text with care: quote every term)."""
        return self._add(name, "MATCH", query)

    def prefix(self, name: str, prefix: str | None) -> Where:
        """``name`` starts with ``prefix``, as a range so an index on ``name`` is used."""
        if not prefix:
            return self
        col = self._col(name)
        self._parts.append(f"{col} >= ? AND {col} < ?")
        self.params.extend([prefix, prefix + "\U0010ffff"])
        return self

    def after(
        self, names: Sequence[str], values: Sequence[Any], *, descending: bool = False
    ) -> Where:
        """Keyset condition ``(a, b) > (?, ?)`` (``<`` when descending) for cursor paging."""
        cols = ", ".join(self._col(n) for n in names)
        marks = ", ".join("?" * len(values))
        self._parts.append(f"({cols}) {'<' if descending else '>'} ({marks})")
        self.params.extend(values)
        return self

    def match(self, filters: Mapping[str, Any]) -> Where:
        """Equality on every ``name: value`` of ``filters`` (API query parameters)."""
        for name, value in filters.items():
            self.eq(name, value)
        return self

    @property
    def sql(self) -> str:
        """``"WHERE ..."`` or ``""``."""
        return f"WHERE {' AND '.join(self._parts)}" if self._parts else ""

    def __bool__(self) -> bool:
        return bool(self._parts)


# --- sorting -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Sort:
    """Whitelisted sort keys. ``Sort({"ts": "ts", "name": "name"}, default="ts")``.

    ``tiebreak`` (the primary key) is appended so every order is total, which keyset
    pagination needs. ``types`` gives the Python type of a sort expression's values (keyed
    by the SQL expression, the tiebreak included: ``{"id": int, "ts": float}``); a cursor
    coming back with a value of another type is refused (see :func:`decode_cursor`).
    """

    keys: Mapping[str, str]
    default: str
    tiebreak: str = "id"
    types: Mapping[str, type] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.default not in self.keys:
            raise ValueError(f"default sort key {self.default!r} is not among {sorted(self.keys)}")
        unknown = set(self.types) - {*self.keys.values(), self.tiebreak}
        if unknown or not set(self.types.values()) <= {int, float, str}:
            raise ValueError(
                f"Sort.types maps sort expressions to int, float or str; got {dict(self.types)}"
            )

    def resolve(self, key: str | None, direction: str | None = None) -> tuple[str, bool]:
        """``(sql expression, descending)``; anything not whitelisted is a ``ValueError``."""
        name = key or self.default
        if name not in self.keys:
            raise ValueError(
                f"cannot sort by {name!r}; allowed keys: {', '.join(sorted(self.keys))}"
            )
        direction = (direction or "asc").lower()
        if direction not in ("asc", "desc"):
            raise ValueError(f"sort direction must be 'asc' or 'desc', not {direction!r}")
        return self.keys[name], direction == "desc"

    def clause(self, key: str | None, direction: str | None = None) -> str:
        """The ``ORDER BY`` clause for a whitelisted ``key`` and direction, with the tiebreak."""
        expr, desc = self.resolve(key, direction)
        word = "DESC" if desc else "ASC"
        if expr == self.tiebreak:
            return f"ORDER BY {expr} {word}"
        return f"ORDER BY {expr} {word}, {self.tiebreak} {word}"


# --- pagination --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of results. ``next_cursor`` is set (keyset mode) when more rows may follow;
    ``total`` is the count of all matching rows (offset mode)."""

    items: tuple[T, ...]
    limit: int
    next_cursor: str | None = None
    offset: int | None = None
    total: int | None = None

    def __iter__(self) -> Any:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def encode_cursor(values: Sequence[Any]) -> str:
    """An opaque cursor for the keyset ``values`` of the last row of a page."""
    return (
        base64.urlsafe_b64encode(json.dumps(list(values), separators=(",", ":")).encode())
        .decode()
        .rstrip("=")
    )


#: What a cursor may carry: SQLite binds integers of 64 bits at most (a larger one is an
#: ``OverflowError`` in the driver), and no keyset value bastion sorts on is longer.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_CURSOR_TEXT = 4096


_JSON_KINDS = {dict: "an object", list: "an array", type(None): "null", bool: "a boolean"}


def _bad_cursor(why: str) -> ValueError:
    return ValueError(
        f"cursor: invalid pagination cursor ({why}); pass back a page's next_cursor "
        "unchanged, or omit cursor to start at the first page"
    )


def _no_constant(name: str) -> Any:
    raise _bad_cursor(f"{name} is not a keyset value")


def _cursor_value(value: Any, kind: type | None) -> Any:
    """``value`` if it can be bound as a keyset value of ``kind``, else the ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _bad_cursor(f"holds {_JSON_KINDS.get(type(value), 'a non-scalar')}")
    if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
        raise _bad_cursor("holds an integer outside SQLite's 64-bit range")
    if isinstance(value, float) and not math.isfinite(value):  # 1e400 parses as inf
        raise _bad_cursor("holds a number that is not finite")
    if isinstance(value, str) and len(value) > _MAX_CURSOR_TEXT:
        raise _bad_cursor("holds an over-long text")
    if kind is not None:
        # A float column's values may come back as whole numbers; nothing else converts.
        fits = isinstance(value, kind) or (kind is float and isinstance(value, int))
        if not fits:
            raise _bad_cursor(f"holds a {type(value).__name__} where a {kind.__name__} belongs")
    return value


def decode_cursor(cursor: str, width: int, types: Sequence[type | None] | None = None) -> list[Any]:
    """The keyset values of ``cursor`` (made by :func:`encode_cursor`), fully checked.

    A cursor comes back from the caller, so it is untrusted input: anything but a JSON list
    of ``width`` scalars that SQLite can bind (an ``int`` in the 64-bit range, a finite
    ``float``, a ``str``; of the sort's declared type where ``types`` gives one) is a
    ``ValueError`` that names the ``cursor`` parameter, before any value reaches SQL.
    """
    kinds: Sequence[type | None] = types if types is not None else [None] * width
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        # parse_constant: JSON's NaN/Infinity extensions are not keyset values.
        values = json.loads(
            base64.urlsafe_b64decode(padded.encode("ascii")), parse_constant=_no_constant
        )
    except (binascii.Error, ValueError, UnicodeError, RecursionError) as err:
        if isinstance(err, ValueError) and str(err).startswith("cursor:"):
            raise
        raise _bad_cursor("not a cursor this list gave out") from None
    if not isinstance(values, list) or len(values) != width:
        raise _bad_cursor("not a cursor for this order")
    return [_cursor_value(v, k) for v, k in zip(values, kinds, strict=True)]


def paginate(
    source: Database | ReadTx,
    *,
    select: str,
    table: str,
    where: Where,
    sort: Sort,
    sort_key: str | None,
    direction: str | None,
    make: Callable[[Row], T],
    limit: int,
    cursor: str | None = None,
    offset: int | None = None,
) -> Page[T]:
    """Run a paged query: keyset when ``offset`` is None (cursor from the previous page),
    offset with a total count otherwise. ``select`` is the column list; the sort key and
    ``sort.tiebreak`` must be among the selected columns' SQL."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    expr, desc = sort.resolve(sort_key, direction)
    order = sort.clause(sort_key, direction)
    keys = [expr] if expr == sort.tiebreak else [expr, sort.tiebreak]
    if offset is not None:
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        if cursor is not None:
            raise ValueError("give either cursor or offset, not both")
        sql = f"SELECT {select} FROM {table} {where.sql} {order} LIMIT ? OFFSET ?"
        count_sql = f"SELECT count(*) FROM {table} {where.sql}"
        params = [*where.params]

        def both(tx: ReadTx) -> tuple[list[Row], int]:
            return tx.query(sql, [*params, limit, offset]), int(tx.scalar(count_sql, params))

        rows, total = source.read(both) if isinstance(source, Database) else both(source)
        return Page(tuple(make(r) for r in rows), limit, offset=offset, total=total)
    if cursor is not None:
        values = decode_cursor(cursor, len(keys), [sort.types.get(k) for k in keys])
        where = _copy_where(where).after(keys, values, descending=desc)
    key_cols = ", ".join(keys)
    sql = f"SELECT {select}, {key_cols} FROM {table} {where.sql} {order} LIMIT ?"
    rows = source.query(sql, [*where.params, limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    width = len(keys)
    items = tuple(make(r[:-width]) for r in rows)
    next_cursor = encode_cursor(rows[-1][-width:]) if more and rows else None
    return Page(items, limit, next_cursor=next_cursor)


def _copy_where(where: Where) -> Where:
    copy = Where(where._columns)
    copy._parts = list(where._parts)
    copy.params = list(where.params)
    return copy


# --- writes ------------------------------------------------------------------------------------


def expect_changed(changed: int, what: str, *, hint: str | None = None) -> int:
    """Raise ``NotFound`` naming ``what`` when an update/delete by id changed no row."""
    if changed == 0:
        raise NotFound(f"{what} does not exist", hint=hint)
    return changed


def save_version(
    tx: WriteTx,
    *,
    versions_table: str,
    owner_column: str,
    owner_id: Any,
    values: Mapping[str, Any],
    pointer_table: str,
    pointer_column: str,
    pointer_key: str = "id",
    version_column: str = "version",
) -> int:
    """Insert version N+1 of ``owner_id``'s history and point ``pointer_table`` at it.

    Both happen inside the caller's write unit, so a reader sees either the old current
    version or the new one with its row, never a pointer to a missing version (seed 003's
    soul versions). The owner's pointer row must exist (else ``NotFound``, and the inserted
    version rolls back with the unit). Give ``versions_table`` ``UNIQUE(owner, version)``:
    the one-writer engine already serializes N+1, the constraint guards other writers.
    """
    vt, oc, vc = _ident(versions_table), _ident(owner_column), _ident(version_column)
    pt, pc, pk = _ident(pointer_table), _ident(pointer_column), _ident(pointer_key)
    version = int(
        tx.scalar(f"SELECT coalesce(max({vc}), 0) + 1 FROM {vt} WHERE {oc} = ?", (owner_id,))
    )
    columns = [oc, vc, *(_ident(c) for c in values)]
    tx.execute(
        f"INSERT INTO {vt} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        (owner_id, version, *values.values()),
    )
    expect_changed(
        tx.execute(f"UPDATE {pt} SET {pc} = ? WHERE {pk} = ?", (version, owner_id)),
        f"{pointer_table} {pointer_key}={owner_id!r}",
    )
    return version


class Repo:
    """Base of a domain repository: holds the :class:`Database` it reads and writes."""

    __slots__ = ("db",)

    def __init__(self, db: Database) -> None:
        self.db = db
