"""Shared pieces of the migration engine: names, id rules, a package's SQL files, statement
splitting."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

import apsw

from bastion.errors import BaselineMismatch
from bastion.store.engine import WriteTx

HISTORY_TABLE = "schema_migrations"
LOST_AND_FOUND_TABLE = "bastion_lost_and_found"

_HISTORY_DDL = f"""CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (
    namespace TEXT NOT NULL,
    id TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at REAL NOT NULL,
    duration_ms REAL NOT NULL,
    bastion_version TEXT NOT NULL,
    previous_id TEXT,
    kind TEXT NOT NULL DEFAULT 'applied' CHECK (kind IN ('applied', 'baseline')),
    PRIMARY KEY (namespace, id)
)"""

_LOST_AND_FOUND_DDL = f"""CREATE TABLE IF NOT EXISTS {LOST_AND_FOUND_TABLE} (
    id INTEGER PRIMARY KEY,
    source_table TEXT NOT NULL,
    source_rowid INTEGER,
    reason TEXT NOT NULL,
    row_json TEXT NOT NULL,
    moved_at REAL NOT NULL
)"""

_ID = re.compile(r"^(?P<number>\d{4,})_(?P<name>[A-Za-z0-9][A-Za-z0-9_]*)$")
_FILE = re.compile(r"^(?P<id>\d{4,}_[A-Za-z0-9][A-Za-z0-9_]*)\.sql$")
_NAMESPACE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DIRECTIVE = re.compile(r"^\s*--\s*bastion:\s*(?P<words>[a-z\- ,]+?)\s*$", re.MULTILINE)

#: ``fn(tx, kind, subject, data)``: records an event inside the migration's transaction
#: (app.py wires the events table; kinds ``migration.applied``, ``migration.edit_accepted``,
#: ``migration.baselined``, ``backup.created``).
EventSink = Callable[[WriteTx, str, str, dict[str, Any]], None]


def _quote(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"{name!r} is not a plain SQL identifier (letters, digits, underscore)")
    return f'"{name}"'


def checksum_text(text: str) -> str:
    """SHA-256 of ``text`` with line endings normalized (CRLF/CR -> LF)."""
    normalized = text.replace("\r\n", "\n").replace("\r", "\n")
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def sql_directives(text: str, origin: str) -> set[str]:
    """The ``-- bastion: ...`` directives of a migration's SQL; ValueError for one not known."""
    words: set[str] = set()
    for match in _DIRECTIVE.finditer(text):
        words.update(w.strip() for w in re.split(r"[ ,]+", match.group("words")) if w.strip())
    unknown = words - {"no-transaction", "foreign-keys-off"}
    if unknown:
        raise ValueError(
            f"{origin}: unknown directive(s) {sorted(unknown)}; "
            "known: no-transaction, foreign-keys-off"
        )
    return words


def package_sql(package: str) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """The migrations of the importable package ``package`` (package data): per id, its
    SQLite text and file name (``NNNN_name.sql``), and per id the PostgreSQL text of
    ``NNNN_name.postgresql.sql`` where one is beside it. The one reading of a package's
    files, for ``Namespace.from_package`` and for :mod:`bastion.store.migrate.current`.
    ValueError for a file misnamed or a PostgreSQL text alone."""
    import importlib.resources

    root = importlib.resources.files(package)
    texts: dict[str, tuple[str, str]] = {}
    variants: dict[str, str] = {}
    for entry in root.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        if entry.name.endswith(".postgresql.sql"):
            base = entry.name.removesuffix(".postgresql.sql") + ".sql"
            match = _FILE.match(base)
            if match:
                variants[match.group("id")] = entry.read_text(encoding="utf-8")
                continue
        match = _FILE.match(entry.name)
        if not match:
            raise ValueError(
                f"{package}/{entry.name}: migration files are named NNNN_name.sql "
                "(NNNN_name.postgresql.sql for PostgreSQL's text of one); rename it (or "
                "move it out of the migrations package)"
            )
        texts[match.group("id")] = (entry.read_text(encoding="utf-8"), entry.name)
    orphans = sorted(set(variants) - set(texts))
    if orphans:
        raise ValueError(
            f"{package}: {', '.join(f'{o}.postgresql.sql' for o in orphans)} has no "
            f"{orphans[0]}.sql beside it (the SQLite text every migration needs)"
        )
    return texts, variants


def split_statements(sql: str) -> list[str]:
    """Split a script into complete statements (SQLite's own tokenizer decides completeness,
    so semicolons inside strings, comments and trigger bodies do not split)."""
    statements: list[str] = []
    current: list[str] = []
    for piece in sql.split(";"):
        current.append(piece)
        candidate = ";".join(current) + ";"
        if apsw.complete(candidate):
            if candidate.strip(" \t\r\n;") and _has_code(candidate):
                statements.append(candidate.strip())
            current = []
    rest = ";".join(current).strip()
    if rest and _has_code(rest):
        statements.append(rest)
    return statements


def _has_code(text: str) -> bool:
    stripped = re.sub(r"--[^\n]*|/\*.*?\*/", "", text, flags=re.DOTALL)
    return bool(stripped.strip(" \t\r\n;"))


def _utc_stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _number(id: str) -> int:
    match = _ID.match(id)
    return int(match.group("number")) if match else -1


def baseline_mismatch(
    where: object,
    namespace: str,
    at: str,
    *,
    live: Mapping[str, object],
    expected: Mapping[str, object],
    later_only: Collection[str],
) -> BaselineMismatch | None:
    """Why a database's live schema is not ``namespace`` at migration ``at`` (objects missing,
    defined otherwise, or made by later migrations), or None when it is: what a baseline must
    check before it records history, on either engine."""
    missing = sorted(k for k in expected if k not in live)
    different = sorted(k for k in expected if k in live and live[k] != expected[k])
    newer = sorted(k for k in later_only if k in live)
    if not (missing or different or newer):
        return None
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing[:10])}")
    if different:
        parts.append(f"different definition of {', '.join(different[:10])}")
    if newer:
        parts.append(f"has objects of later migrations: {', '.join(newer[:10])}")
    return BaselineMismatch(
        f"{where} does not match namespace {namespace} at {at}: " + "; ".join(parts),
        namespace=namespace,
        at=at,
        missing=missing,
        different=different,
        newer=newer,
    )
