"""Declaring migrations: ``Migration``, ``Namespace``, orphan policies."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bastion.store.engine import WriteTx
from bastion.store.migrate._common import (
    _FILE,
    _ID,
    _NAMESPACE,
    _quote,
    checksum_text,
    package_sql,
    sql_directives,
)


class MigrationKind(enum.Enum):
    SQL = "sql"
    PYTHON = "python"


class OrphanAction(enum.Enum):
    """What to do with rows whose reference points at no parent row."""

    DELETE = "delete"
    SET_NULL = "set-null"
    LOST_AND_FOUND = "lost-and-found"


@dataclasses.dataclass(frozen=True, slots=True)
class OrphanPolicy:
    """Declared handling of orphans in ``table.column`` -> ``parent.parent_column``.

    Runs inside the migration's transaction, before its body, so a migration that adds a
    FOREIGN KEY to legacy data (seed 004's ``0007_fk_constraints``) finds no orphans left.
    Policies run in the order declared: list parents before children, since deleting an orphan
    parent can orphan its own children.
    """

    table: str
    column: str
    parent: str
    action: OrphanAction
    parent_column: str = "id"

    def __post_init__(self) -> None:
        for name in (self.table, self.column, self.parent, self.parent_column):
            _quote(name)
        if not isinstance(self.action, OrphanAction):
            raise TypeError(f"action must be an OrphanAction, not {self.action!r}")

    @property
    def relation(self) -> str:
        return f"{self.table}.{self.column}->{self.parent}.{self.parent_column}"


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    """One migration. Build with :meth:`sql`, :meth:`python`, :meth:`from_file` or :meth:`rebuild`."""

    id: str
    checksum: str
    kind: MigrationKind
    text: str | None = None
    fn: Callable[[WriteTx], object] | None = dataclasses.field(default=None, compare=False)
    #: False for SQL that SQLite refuses inside a transaction (VACUUM, some PRAGMAs).
    transactional: bool = True
    #: True for table rebuilds: enforcement off, ``foreign_key_check`` before COMMIT.
    foreign_keys_off: bool = False
    orphans: tuple[OrphanPolicy, ...] = ()
    #: Where it came from (file, or module.function), for error messages.
    origin: str = ""
    #: SQL for another engine where the two differ: ``(("postgresql", text),)``. ``text``
    #: is SQLite's; an engine without an entry here runs ``text``.
    variants: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not _ID.match(self.id):
            raise ValueError(
                f"migration id {self.id!r} must look like 0001_name "
                "(4+ digits, underscore, letters/digits/underscores)"
            )
        if not self.transactional and (self.kind is not MigrationKind.SQL or self.orphans):
            raise ValueError(
                f"{self.id}: only plain SQL migrations may be non-transactional "
                "(no Python callables, no orphan policies)"
            )
        if not self.transactional and self.foreign_keys_off:
            raise ValueError(f"{self.id}: foreign_keys_off needs a transactional migration")

    def text_for(self, dialect: str) -> str | None:
        """The SQL this migration runs on ``dialect`` ("sqlite", "postgresql")."""
        for name, text in self.variants:
            if name == dialect:
                return text
        return self.text

    def checksum_for(self, dialect: str) -> str:
        """The checksum recorded on ``dialect``: of the text that runs there (editing the
        PostgreSQL text of a migration does not make every SQLite database "edited")."""
        if self.kind is MigrationKind.SQL:
            text = self.text_for(dialect)
            if text is not None and text is not self.text:
                return checksum_text(text)
        return self.checksum

    @property
    def number(self) -> int:
        match = _ID.match(self.id)
        assert match is not None  # checked in __post_init__
        return int(match.group("number"))

    @classmethod
    def sql(
        cls,
        id: str,
        text: str | None = None,
        *,
        sqlite: str | None = None,
        postgresql: str | None = None,
        transactional: bool | None = None,
        foreign_keys_off: bool | None = None,
        orphans: Iterable[OrphanPolicy] = (),
        origin: str | None = None,
    ) -> Migration:
        """A SQL migration. Comment lines ``-- bastion: no-transaction`` and ``-- bastion:
        foreign-keys-off`` in ``text`` set the flags when the arguments are not given.

        Where the engines need different SQL, give each its own:
        ``Migration.sql("0002_ids", sqlite="... INTEGER PRIMARY KEY ...",
        postgresql="... BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY ...")``; ``text``
        alone runs on both. On PostgreSQL every SQL migration runs in one transaction."""
        if text is not None and sqlite is not None:
            raise ValueError(f"{origin or id}: give text or sqlite=, not both")
        text = text if text is not None else sqlite
        if text is None:
            raise ValueError(
                f"{origin or id}: a SQL migration needs its SQLite text (text or sqlite=); "
                "postgresql= alone would leave SQLite databases without the step"
            )
        words = sql_directives(text, origin or id)
        return cls(
            id=id,
            checksum=checksum_text(text),
            kind=MigrationKind.SQL,
            text=text,
            transactional=("no-transaction" not in words)
            if transactional is None
            else transactional,
            foreign_keys_off=("foreign-keys-off" in words)
            if foreign_keys_off is None
            else foreign_keys_off,
            orphans=tuple(orphans),
            origin=origin or f"<sql {id}>",
            variants=(("postgresql", postgresql),) if postgresql is not None else (),
        )

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **options: Any) -> Migration:
        """A SQL migration from ``NNNN_name.sql``; the id is the file's stem."""
        file = Path(path)
        match = _FILE.match(file.name)
        if not match:
            raise ValueError(f"{file}: migration files are named NNNN_name.sql")
        return cls.sql(
            match.group("id"), file.read_text(encoding="utf-8"), origin=str(file), **options
        )

    @classmethod
    def python(
        cls,
        id: str,
        fn: Callable[[WriteTx], object],
        *,
        source: str | None = None,
        foreign_keys_off: bool = False,
        orphans: Iterable[OrphanPolicy] = (),
    ) -> Migration:
        """A migration in Python: ``fn(tx)`` runs inside the migration's transaction.

        The checksum covers ``source`` if given (declare a version string there when the
        function's text is not stable), else the function's source code.
        """
        if source is None:
            try:
                source = inspect.getsource(fn)
            except (OSError, TypeError):
                source = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
        origin = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
        return cls(
            id=id,
            checksum=checksum_text(source),
            kind=MigrationKind.PYTHON,
            fn=fn,
            foreign_keys_off=foreign_keys_off,
            orphans=tuple(orphans),
            origin=origin,
        )

    @classmethod
    def rebuild(
        cls,
        id: str,
        table: str,
        create_sql: str,
        *,
        select: Mapping[str, str] | None = None,
        indexes: Sequence[str] | None = None,
        orphans: Iterable[OrphanPolicy] = (),
    ) -> Migration:
        """A table rebuild (see :func:`rebuild_table`) as a migration, foreign keys off."""
        policies = tuple(orphans)
        source = json.dumps(
            {
                "rebuild": table,
                "create": create_sql,
                "select": dict(select) if select else None,
                "indexes": list(indexes) if indexes is not None else None,
            },
            sort_keys=True,
        )

        def run(tx: WriteTx) -> None:
            from bastion.store.migrate.helpers import rebuild_table  # helpers imports this module

            rebuild_table(tx, table, create_sql, select=select, indexes=indexes)

        return cls(
            id=id,
            checksum=checksum_text(source),
            kind=MigrationKind.PYTHON,
            fn=run,
            foreign_keys_off=True,
            orphans=policies,
            origin=f"<rebuild {table} {id}>",
        )


@dataclasses.dataclass(frozen=True)
class Namespace:
    """An ordered, validated set of migrations under one name."""

    name: str
    migrations: tuple[Migration, ...]

    def __init__(self, name: str, migrations: Iterable[Migration]) -> None:
        if not _NAMESPACE.match(name):
            raise ValueError(f"namespace {name!r} must be lowercase letters, digits, underscores")
        items = sorted(migrations, key=lambda m: m.number)
        seen: dict[int, str] = {}
        for m in items:
            if not isinstance(m, Migration):
                raise TypeError(f"namespace {name}: {m!r} is not a Migration")
            if m.number in seen:
                raise ValueError(
                    f"namespace {name}: {seen[m.number]} and {m.id} share the number "
                    f"{m.number:04d}; give each migration its own number"
                )
            seen[m.number] = m.id
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "migrations", tuple(items))

    @classmethod
    def from_package(cls, name: str, package: str) -> Namespace:
        """Every ``NNNN_name.sql`` in the importable package ``package`` (package data).

        ``NNNN_name.postgresql.sql`` beside one is that migration's PostgreSQL text (see
        ``Migration.sql(..., postgresql=...)``), for where the engines' SQL differs."""
        texts, variants = package_sql(package)
        migrations = [
            Migration.sql(
                id,
                text,
                postgresql=variants.get(id),
                origin=f"{package}/{file}",
            )
            for id, (text, file) in texts.items()
        ]
        return cls(name, migrations)

    @classmethod
    def from_directory(cls, name: str, path: str | os.PathLike[str]) -> Namespace:
        """Every ``NNNN_name.sql`` in a directory."""
        return cls(name, [Migration.from_file(p) for p in sorted(Path(path).glob("*.sql"))])

    def get(self, id: str) -> Migration:
        for m in self.migrations:
            if m.id == id:
                return m
        known = ", ".join(m.id for m in self.migrations) or "none"
        raise ValueError(f"namespace {self.name} has no migration {id!r} (known: {known})")

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.migrations)
