"""Schema fingerprints: a database's ``sqlite_master`` normalized, compared and hashed.

Two databases have the same schema when their tables, indexes, views and triggers have the same
names and the same *normalized* SQL. Normalizing matters because SQLite stores the text as it
was written, with one twist: ``ALTER TABLE new_t RENAME TO t`` (the last step of a table
rebuild) rewrites the stored text to ``CREATE TABLE "t" (...)``. A database upgraded through a
rebuild must still compare equal to a fresh install, so the normal form drops identifier quotes,
comments, case outside string literals and layout whitespace.

bastion's own bookkeeping tables (``schema_migrations``, ``bastion_lost_and_found``) are left out:
they say how a database got its schema, not what the schema is.

Read-only: nothing here writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

__all__ = [
    "BOOKKEEPING_TABLES",
    "SchemaDiff",
    "SchemaObject",
    "diff_schemas",
    "fingerprint",
    "normalize_sql",
    "schema_objects",
]

#: Tables bastion itself keeps in every migrated database; never part of a fingerprint.
BOOKKEEPING_TABLES = frozenset({"schema_migrations", "bastion_lost_and_found"})

_LITERAL = re.compile(r"('(?:[^']|'')*')")
_LINE_COMMENT = re.compile(r"--[^\n]*")
_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_QUOTED_IDENT = re.compile(
    r'"([A-Za-z_][A-Za-z0-9_]*)"|`([A-Za-z_][A-Za-z0-9_]*)`|\[([A-Za-z_][A-Za-z0-9_]*)\]'
)
_SPACE = re.compile(r"\s+")
_PUNCT_SPACE = re.compile(r"\s*([(),;=])\s*")


class _Queryable(Protocol):
    def query(self, sql: str, params: Any = ...) -> list[tuple[Any, ...]]: ...


@dataclasses.dataclass(frozen=True, slots=True)
class SchemaObject:
    """One row of ``sqlite_master`` in normal form."""

    type: str
    name: str
    table: str
    sql: str


@dataclasses.dataclass(frozen=True, slots=True)
class SchemaDiff:
    """What differs between two schemas, by ``type:name``."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]

    @property
    def empty(self) -> bool:
        """Whether the two schemas are the same."""
        return not (self.added or self.removed or self.changed)

    def to_dict(self) -> dict[str, list[str]]:
        """The difference as JSON-ready lists of names."""
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": list(self.changed),
        }


def _unquote(match: re.Match[str]) -> str:
    return next(group for group in match.groups() if group is not None)


def normalize_sql(sql: str) -> str:
    """The comparable form of a CREATE statement (see the module docstring)."""
    parts = _LITERAL.split(sql)
    out: list[str] = []
    for index, part in enumerate(parts):
        if index % 2:  # a string literal: kept byte for byte
            out.append(part)
            continue
        text = _BLOCK_COMMENT.sub(" ", _LINE_COMMENT.sub(" ", part))
        text = _QUOTED_IDENT.sub(_unquote, text).lower()
        out.append(_SPACE.sub(" ", text))
    joined = "".join(out)
    return _PUNCT_SPACE.sub(r"\1", joined).strip().rstrip(";")


def schema_objects(
    source: _Queryable, *, exclude: Iterable[str] = BOOKKEEPING_TABLES
) -> dict[str, SchemaObject]:
    """``type:name`` -> object for every user object of ``source`` (a Database or a tx).

    Indexes SQLite creates for UNIQUE/PRIMARY KEY constraints (``sqlite_autoindex_*``) have no
    SQL and follow from their table's text, so they are left out too.
    """
    skip = set(exclude)
    rows = source.query(
        "SELECT type, name, tbl_name, sql FROM sqlite_master "
        "WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY type, name"
    )
    objects: dict[str, SchemaObject] = {}
    for type_, name, table, sql in rows:
        if name in skip or table in skip:
            continue
        objects[f"{type_}:{name}"] = SchemaObject(type_, name, table, normalize_sql(sql))
    return objects


def fingerprint(objects: Mapping[str, SchemaObject] | _Queryable) -> str:
    """SHA-256 over the normalized objects: equal schemas, equal fingerprints."""
    objs = objects if isinstance(objects, Mapping) else schema_objects(objects)
    digest = hashlib.sha256()
    for key in sorted(objs):
        obj = objs[key]
        digest.update(f"{obj.type}\x1f{obj.name}\x1f{obj.table}\x1f{obj.sql}\x1e".encode())
    return digest.hexdigest()


def diff_schemas(
    before: Mapping[str, SchemaObject], after: Mapping[str, SchemaObject]
) -> SchemaDiff:
    """Objects added, removed and changed going from ``before`` to ``after``."""
    return SchemaDiff(
        added=tuple(sorted(after.keys() - before.keys())),
        removed=tuple(sorted(before.keys() - after.keys())),
        changed=tuple(sorted(k for k in before.keys() & after.keys() if before[k] != after[k])),
    )
