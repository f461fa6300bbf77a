"""The vault index in ``vault.db``: one row per (scope, name), for every backend.

The index is what makes ``list``, ``exists`` and ``status`` work without reading a value (the
keychain cannot list; keyring #759) and what gives each record its own version: concurrent
writers of different names touch different rows, and a writer of the same name either wins
last or, with ``expected_version``, gets ``Conflict`` when someone else wrote first.

``vault.db`` is its own database (mode 0600) with its own migrations namespace ``vault``
(``bastion/vault/migrations/NNNN_name.sql``); secrets and their index never enter
``bastion.db``.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from bastion._home import missing_error, record
from bastion.config import Config
from bastion.errors import Conflict
from bastion.store import Database, ReadTx, WriteTx
from bastion.store.migrations import Migrator, Namespace
from bastion.vault.backend import SecretMeta

__all__ = ["Index", "case_twin_error", "open_vault_db"]

_COLUMNS = "scope, name, backend, created_at, updated_at, last_used_at, size, version, fingerprint"
MIGRATIONS_PACKAGE = "bastion.vault.migrations"
#: Names per ``IN (...)`` of a status lookup (SQLite allows 32,766 parameters).
_IN_CHUNK = 500
#: Sort key -> the ORDER BY columns; each order is held by an index (migration 0002).
_ORDERS = {
    "name": ("scope", "name"),
    "updated_at": ("updated_at", "scope", "name"),
    "created_at": ("created_at", "scope", "name"),
}


def open_vault_db(cfg: Config, *, env: Mapping[str, str] | None = None) -> Database:
    """Open (creating, mode 0600) ``vault.db`` and apply the ``vault`` migrations.

    A ``vault.db`` the home has held that has gone missing is never recreated empty (that
    would orphan every secret's index and, on the encrypted-file backend, its ciphertext):
    ``StoreMissing`` names it and how to restore it (see :mod:`bastion._home`).

    With ``store.encryption = "required"`` it is encrypted like ``bastion.db``, with the key
    from ``store.key_source`` (``env`` replaces ``os.environ`` for its variables)."""
    missing = missing_error(cfg.home, "vault", cfg.vault_db_path)
    if missing is not None:
        raise missing
    key = None
    if cfg.store.encryption == "required":
        from bastion.store.crypt.cipher import FileKind, file_kind
        from bastion.vault.dbkey import DatabaseKeySource

        new = file_kind(cfg.vault_db_path) is not FileKind.ENCRYPTED
        key = DatabaseKeySource(cfg, env=env).key_for(cfg.vault_db_path, create=new)
    db = Database.open(cfg.vault_db_path, cfg.store, name="vault", key=key)
    record(cfg.home, "vault", cfg.vault_db_path)
    try:
        _migrate(db, cfg)
    except BaseException:
        db.close()
        raise
    return db


def _migrate(db: Database, cfg: Config) -> None:
    # A pre-migration backup of vault.db holds ciphertext and metadata only, never a value.
    ns = Namespace.from_package("vault", MIGRATIONS_PACKAGE)
    Migrator(db, backups_dir=cfg.backups_dir, keep=cfg.backup.pre_migrate_keep).migrate([ns])


class Index:
    """Rows of ``vault_secrets``. Mutations take the caller's ``WriteTx``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @property
    def path(self) -> Path:
        """vault.db's path."""
        return self.db.path

    def lookup(self, scope: str, name: str) -> tuple[int, str, str] | None:
        """``(version, backend, fingerprint)`` for the hot read path, or ``None``."""
        row = self.db.query_one(
            "SELECT version, backend, fingerprint FROM vault_secrets WHERE scope = ? AND name = ?",
            (scope, name),
        )
        return None if row is None else (int(row[0]), str(row[1]), str(row[2]))

    def get(self, scope: str, name: str, tx: ReadTx | None = None) -> SecretMeta | None:
        """``scope/name``'s row, or None (in ``tx`` when given)."""
        sql = f"SELECT {_COLUMNS} FROM vault_secrets WHERE scope = ? AND name = ?"
        row = tx.query_one(sql, (scope, name)) if tx else self.db.query_one(sql, (scope, name))
        return None if row is None else SecretMeta(*row)

    def list(self, scope: str | None = None) -> list[SecretMeta]:
        """Rows by scope and name, optionally of one scope."""
        if scope is None:
            rows = self.db.query(f"SELECT {_COLUMNS} FROM vault_secrets ORDER BY scope, name")
        else:
            rows = self.db.query(
                f"SELECT {_COLUMNS} FROM vault_secrets WHERE scope = ? ORDER BY name", (scope,)
            )
        return [SecretMeta(*row) for row in rows]

    def count(self, scope: str | None = None) -> int:
        """How many secrets there are (in ``scope``): read from ``vault_counts``, which
        triggers keep, so it costs one row per scope, not one per secret."""
        if scope is None:
            return int(self.db.scalar("SELECT coalesce(sum(secrets), 0) FROM vault_counts"))
        found = self.db.scalar("SELECT secrets FROM vault_counts WHERE scope = ?", (scope,))
        return int(found or 0)

    def stamp(self, scope: str) -> int | None:
        """The scope's change stamp (migration 0004): a new random number whenever one of its
        secrets is set, deleted or moved, by any process; None for a scope never written.
        One primary-key read, no value: what :class:`~bastion.vault.cache.ScopeCache` checks."""
        row = self.db.lookup("SELECT stamp FROM vault_scope_stamps WHERE scope = ?", (scope,))
        return None if row is None else int(row[0])

    def flags(self, scope: str, names: Iterable[str]) -> dict[str, tuple[float, int]]:
        """``name -> (updated_at, version)`` for those of ``names`` that exist in ``scope``:
        one primary-key lookup per name asked, whatever the number of secrets."""
        wanted = list(dict.fromkeys(names))
        found: dict[str, tuple[float, int]] = {}
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows = self.db.query(
                "SELECT name, updated_at, version FROM vault_secrets "
                f"WHERE scope = ? AND name IN ({marks})",
                (scope, *chunk),
            )
            found.update({str(n): (float(u), int(v)) for n, u, v in rows})
        return found

    def page(
        self,
        scope: str | None,
        *,
        sort: str = "name",
        descending: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[SecretMeta]:
        """``limit`` rows from ``offset`` in a whitelisted order (``name``: scope then name;
        ``updated_at``/``created_at``: that time, then scope and name), read off the index
        that holds that order (migration 0002), so a page costs its own rows."""
        if sort not in _ORDERS:
            raise ValueError(f"cannot sort secrets by {sort!r}; use one of {sorted(_ORDERS)}")
        if limit < 1 or offset < 0:
            raise ValueError("limit must be at least 1 and offset at least 0")
        word = "DESC" if descending else "ASC"
        order = ", ".join(f"{column} {word}" for column in _ORDERS[sort])
        where, params = ("WHERE scope = ?", [scope]) if scope is not None else ("", [])
        rows = self.db.query(
            f"SELECT {_COLUMNS} FROM vault_secrets {where} ORDER BY {order} LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return [SecretMeta(*row) for row in rows]

    def recount(self) -> dict[str, tuple[int, int]]:
        """Rewrite ``vault_counts`` from the rows (after a salvage copied the two tables as
        they were); returns ``scope -> (counted before, rows)`` for every scope that was off."""

        def unit(tx: WriteTx) -> dict[str, tuple[int, int]]:
            kept = {str(s): int(n) for s, n in tx.query("SELECT scope, secrets FROM vault_counts")}
            real = {
                str(s): int(n)
                for s, n in tx.query("SELECT scope, count(*) FROM vault_secrets GROUP BY scope")
            }
            off = {
                scope: (kept.get(scope, 0), real.get(scope, 0))
                for scope in kept.keys() | real.keys()
                if kept.get(scope, 0) != real.get(scope, 0)
            }
            if off:
                tx.execute("DELETE FROM vault_counts")
                tx.executemany(
                    "INSERT INTO vault_counts (scope, secrets) VALUES (?, ?)", list(real.items())
                )
            return off

        result: dict[str, tuple[int, int]] = self.db.write(unit)
        return result

    def keys(self, backend: str | None = None) -> set[tuple[str, str]]:
        """Every indexed ``(scope, name)``, optionally of one backend."""
        if backend is None:
            rows = self.db.query("SELECT scope, name FROM vault_secrets")
        else:
            rows = self.db.query(
                "SELECT scope, name FROM vault_secrets WHERE backend = ?", (backend,)
            )
        return {(str(s), str(n)) for s, n in rows}

    def case_twin(self, scope: str, name: str, tx: ReadTx | None = None) -> tuple[str, str] | None:
        """The (scope, name) of a secret that equals ``scope``/``name`` but for case, or None
        (the secret itself does not count). Migration 0005 says why this matters: on Windows
        the two would be one keychain item."""
        sql = (
            "SELECT scope, name FROM vault_secrets WHERE scope = ? COLLATE NOCASE "
            "AND name = ? COLLATE NOCASE AND NOT (scope = ? AND name = ?) LIMIT 1"
        )
        args = (scope, name, scope, name)
        row = tx.query_one(sql, args) if tx else self.db.query_one(sql, args)
        return None if row is None else (row[0], row[1])

    def _refuse_case_twin(self, tx: WriteTx, scope: str, name: str) -> None:
        twin = self.case_twin(scope, name, tx)
        if twin is not None:
            raise case_twin_error(scope, name, twin)

    def upsert(
        self,
        tx: WriteTx,
        *,
        scope: str,
        name: str,
        backend: str,
        size: int,
        fingerprint: str,
        expected_version: int | None = None,
        version: int | None = None,
    ) -> SecretMeta:
        """Create or replace the row, bumping its version; compare-and-set when asked.

        ``expected_version=0`` means "must not exist yet". Runs inside the caller's write
        transaction (``BEGIN IMMEDIATE``), so the read-then-write below cannot interleave with
        another writer, in this process or another.
        """
        now = time.time()
        current = self.get(scope, name, tx)
        have = current.version if current else 0
        if expected_version is not None and expected_version != have:
            raise Conflict(
                f"{scope}/{name} is at version {have}, not {expected_version}: someone else "
                "wrote it first",
                hint="Read the secret again and retry with its current version.",
                scope=scope,
                name=name,
                version=have,
            )
        new_version = version if version is not None else have + 1
        if current is None:
            self._refuse_case_twin(tx, scope, name)
            tx.execute(
                f"INSERT INTO vault_secrets ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?)",
                (scope, name, backend, now, now, size, new_version, fingerprint),
            )
            return SecretMeta(scope, name, backend, now, now, None, size, new_version, fingerprint)
        tx.execute(
            "UPDATE vault_secrets SET backend = ?, updated_at = ?, size = ?, version = ?, "
            "fingerprint = ? WHERE scope = ? AND name = ?",
            (backend, now, size, new_version, fingerprint, scope, name),
        )
        return SecretMeta(
            scope,
            name,
            backend,
            current.created_at,
            now,
            current.last_used_at,
            size,
            new_version,
            fingerprint,
        )

    def remove(self, tx: WriteTx, scope: str, name: str) -> SecretMeta | None:
        """Delete ``scope/name``'s row in ``tx``; returns it, or None if absent."""
        current = self.get(scope, name, tx)
        if current is not None:
            tx.execute("DELETE FROM vault_secrets WHERE scope = ? AND name = ?", (scope, name))
        return current


def case_twin_error(scope: str, name: str, twin: tuple[str, str]) -> Conflict:
    """The refusal of ``scope/name`` beside ``twin``, a secret spelt the same but for case."""
    return Conflict(
        f"{scope}/{name} differs only in case from the existing secret {twin[0]}/{twin[1]}: "
        "secret names are compared without case (Windows' Credential Manager would hold both "
        "as one item, and writing one would replace the other's value)",
        hint=f"Use the existing name `{twin[1]}` (scope {twin[0]}), or delete that secret "
        "first if the new spelling is the one you want.",
        scope=scope,
        name=name,
        existing_scope=twin[0],
        existing_name=twin[1],
    )
