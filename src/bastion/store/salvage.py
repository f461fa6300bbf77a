"""Salvage: copy whatever is still readable out of a damaged SQLite file into a new one.

Neither apsw's bundled shell nor Debian's ``sqlite3`` 3.40 has a working ``.recover``, and
``.dump`` stops a table at its first unreadable page (then reads backwards from the end), so
everything between two bad pages is lost. bastion salvages by itself, read-only on the source:

1. the schema first (tables, then after the data: indexes, triggers, views; each statement on
   its own, so one bad definition costs only itself);
2. each rowid table copied by rowid range, ``ORDER BY rowid``. When a read fails part-way,
   the rows read so far are kept and the rest of the range is bisected, so an unreadable page
   (or a single malformed record) costs only the rowids it holds: the search narrows down to
   the unreadable keys and continues past them. Ranges are rowid *values*, so the seek goes
   through the b-tree interior and lands beyond the damage;
3. ``WITHOUT ROWID`` tables are read forwards until the first error, then backwards by primary
   key (what ``.dump`` does for every table).

The destination is a fresh file written in one transaction with ``foreign_keys`` off (a
salvaged child row may have lost its parent); run ``foreign_key_check`` on it to see those.
The source is never written: it is opened with ``immutable=1`` from a private working copy
(so a ``-wal`` next to it is replayed into the copy, not into the quarantined original).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

import apsw

from bastion._fs import copy_private, fsync_dir
from bastion.store._filenames import sqlite_uri_path
from bastion.store.crypt.cipher import FileKind, classify, connect
from bastion.store.crypt.key import DatabaseKey
from bastion.store.crypt.pages import decrypt_page

__all__ = ["SalvageResult", "TableSalvage", "salvage"]

#: Failed range probes allowed per table before the rest is declared lost (~1 s of probing).
_PROBE_BUDGET = 20_000
_MIN_ROWID = -(2**63)
_MAX_ROWID = 2**63 - 1


@dataclasses.dataclass(frozen=True, slots=True)
class TableSalvage:
    """One table's salvage: rows read and the rowid ranges lost."""

    name: str
    rows: int
    #: Rowid ranges that could not be read (after bisection), as (first, last) pairs.
    lost_ranges: tuple[tuple[int, int], ...]
    error: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SalvageResult:
    """What a salvage read from a damaged file, per table, and what it could not."""

    source: Path
    dest: Path
    tables: dict[str, TableSalvage]
    schema_errors: tuple[str, ...]
    duration_s: float
    #: Rows found by reading leaf pages directly (under an unreadable interior page, or on a
    #: freed page): kept apart in ``lost_and_found`` for an operator to judge, never merged.
    lost_and_found: int = 0

    @property
    def total_rows(self) -> int:
        """Rows salvaged over every table."""
        return sum(t.rows for t in self.tables.values())

    def to_dict(self) -> dict[str, Any]:
        """The salvage as JSON-ready data."""
        return {
            "source": str(self.source),
            "dest": str(self.dest),
            "total_rows": self.total_rows,
            "tables": {
                name: {
                    "rows": t.rows,
                    "lost_ranges": [list(r) for r in t.lost_ranges[:50]],
                    "lost_range_count": len(t.lost_ranges),
                    "error": t.error,
                }
                for name, t in self.tables.items()
            },
            "schema_errors": list(self.schema_errors),
            "lost_and_found": self.lost_and_found,
            "duration_s": round(self.duration_s, 3),
        }


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def salvage(source: Path, dest: Path, *, key: DatabaseKey | None = None) -> SalvageResult:
    """Copy every readable row of ``source`` into the new file ``dest``. Read-only on source.

    ``source``'s ``-wal`` (if any) is included: both are copied into a private temporary
    directory and read from there. ``dest`` must not exist.

    ``key`` salvages an encrypted database: it is read with the key and ``dest`` is
    encrypted with it (with the source's salt, so the same passphrase opens both); the
    leaf-page scan decrypts each page itself and keeps only pages that authenticate. A
    damaged first page cannot be rebuilt (it is encrypted): nothing is read by SQL then.
    """
    started = time.monotonic()
    source, dest = Path(source).absolute(), Path(dest).absolute()
    if dest.exists():
        raise FileExistsError(f"{dest} exists; salvage writes a new file")
    with tempfile.TemporaryDirectory(prefix=".salvage-", dir=dest.parent) as work:
        # Every file written here is 0600 from its first byte: the copies hold app data.
        copy = Path(work) / "source.db"
        copy_private(source, copy)
        repaired = _repair_header(copy) if key is None else None
        wal = Path(str(source) + "-wal")
        if wal.exists():
            copy_private(wal, Path(str(copy) + "-wal"))
            src = _open_with_wal(copy, key)
        else:
            src = connect(
                f"file:{sqlite_uri_path(copy)}?mode=ro&immutable=1",
                flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI,
                key=key,
            )
        try:
            # Created 0600 before SQLite opens it (SQLite would use the umask's mode).
            os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            out_key = None if key is None else key.with_salt(_salt(copy))
            result = _salvage_into(src, source, dest, copy, key=key, out_key=out_key)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                dest.unlink()
            raise
        finally:
            src.close()
    if repaired:
        result = dataclasses.replace(result, schema_errors=(repaired, *result.schema_errors))
    os.chmod(dest, 0o600)
    fsync_dir(dest.parent)
    return dataclasses.replace(result, duration_s=time.monotonic() - started)


_MAGIC = b"SQLite format 3\x00"


def _salt(copy: Path) -> bytes | None:
    """The salt of an encrypted copy (None for anything else: a damaged header)."""
    with open(copy, "rb") as handle:  # our private copy: no lock of ours to lose
        head = handle.read(24)
    return head[:16] if classify(head) is FileKind.ENCRYPTED else None


def _repair_header(copy: Path) -> str | None:
    """If the 100-byte file header of the working copy is not SQLite's, write a plausible one.

    A smashed header makes SQLite refuse the whole file, although every b-tree page (page 1's
    own b-tree header starts at byte 100) may be intact. The page size is the first
    candidate for which the schema then reads; the rest takes SQLite's defaults (UTF-8,
    no auto-vacuum, size from the file). Only the private copy is changed. Returns a note
    for the report, or None when the header was fine.
    """
    with open(copy, "r+b") as handle:
        header = handle.read(100)
        if len(header) < 100 or header.startswith(_MAGIC):
            return None
        size = copy.stat().st_size
        for page_size in (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512):
            if size % page_size:
                continue
            pages = size // page_size
            fields = struct.pack(
                ">HBBBBBBIIIIIIIIIIII20xII",
                page_size if page_size < 65536 else 1,
                1,  # write version: legacy (rollback journal) so no -wal is expected
                1,  # read version
                0,  # reserved bytes per page
                64,
                32,
                32,
                1,  # file change counter
                pages,  # in-header database size (valid: change counter == version-valid-for)
                0,  # first freelist trunk page
                0,  # freelist pages
                1,  # schema cookie
                4,  # schema format
                0,  # default cache size
                0,  # largest root page (no auto-vacuum)
                1,  # text encoding: UTF-8
                0,  # user version
                0,  # incremental vacuum
                0,  # application id
                1,  # version-valid-for
                3_046_000,  # SQLite version that "wrote" it
            )
            handle.seek(0)
            handle.write(_MAGIC + fields)
            handle.flush()
            try:
                conn = apsw.Connection(
                    f"file:{sqlite_uri_path(copy)}?mode=ro&immutable=1",
                    flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI,
                )
                try:
                    conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()
                finally:
                    conn.close()
            except apsw.Error:
                continue
            return f"file header was not SQLite's; rebuilt it (page size {page_size}) to read on"
        handle.seek(0)
        handle.write(header)  # nothing worked: leave the copy as it was
    return None


def _open_with_wal(copy: Path, key: DatabaseKey | None = None) -> apsw.Connection:
    # A read-write open of the *copy* lets SQLite rebuild the wal-index and read the WAL's
    # committed frames; nothing is written back because nothing here writes.
    conn = connect(str(copy), key=key)
    with contextlib.suppress(apsw.Error):
        conn.execute("PRAGMA query_only = 1").fetchall()
    return conn


def _salvage_into(
    src: apsw.Connection,
    source: Path,
    dest: Path,
    copy: Path,
    *,
    key: DatabaseKey | None = None,
    out_key: DatabaseKey | None = None,
) -> SalvageResult:
    schema_errors: list[str] = []
    try:
        schema = [
            (str(t), str(n), str(tbl), s)
            for t, n, tbl, s in src.execute(
                "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY rowid"
            )
        ]
    except apsw.Error as err:
        schema = []
        schema_errors.append(f"schema unreadable: {err}")
    out = connect(str(dest), key=out_key)
    tables: dict[str, TableSalvage] = {}
    try:
        out.execute("PRAGMA foreign_keys = OFF").fetchall()
        out.execute("PRAGMA journal_mode = OFF").fetchall()
        out.execute("PRAGMA synchronous = OFF").fetchall()
        out.execute("BEGIN")
        copyable = []
        # A virtual table creates its own storage tables ("shadow" tables) with it: they are
        # not created again, and an FTS5 index is rebuilt from the salvaged rows rather than
        # copied (its pages may be what was damaged, and it must match its content table).
        shadows = _shadow_tables(src)
        fts5 = [
            name
            for kind, name, _tbl, sql in schema
            if kind == "table" and sql and _FTS5.match(sql) and not _CONTENTLESS.search(sql)
        ]
        derived = {f"{name}{suffix}" for name in fts5 for suffix in _FTS5_DERIVED}
        for kind, name, _tbl, sql in schema:
            if kind != "table" or sql is None or name.startswith("sqlite_") or name in shadows:
                continue
            try:
                out.execute(sql).fetchall()
            except apsw.Error as err:
                schema_errors.append(f"table {name}: {err}")
                continue
            if not sql.upper().startswith("CREATE VIRTUAL"):
                copyable.append(name)
        for name in copyable:
            tables[name] = _copy_table(src, out, name)
        for name in sorted(shadows - derived):
            # What a virtual table keeps in its shadow tables is its data (an R*Tree's nodes,
            # an FTS5 table's own content): copied over what its creation wrote.
            with contextlib.suppress(apsw.Error):
                out.execute(f"DELETE FROM {_q(name)}").fetchall()
            tables[name] = _copy_table(src, out, name)
        for name in fts5:
            try:
                out.execute(f"INSERT INTO {_q(name)} ({_q(name)}) VALUES ('rebuild')").fetchall()
            except apsw.Error as err:
                schema_errors.append(f"full-text index {name} not rebuilt: {err}")
        if any(n == "sqlite_sequence" for _k, n, _t, _s in schema):
            _copy_sequence(src, out)
        found = 0
        if any(t.lost_ranges for t in tables.values()):
            try:
                found = _scan_leaf_pages(src, out, copy, tables, key)
            except (apsw.Error, OSError, ValueError, IndexError, struct.error) as err:
                schema_errors.append(f"leaf page scan stopped: {err}")
        out.execute("COMMIT")
        for kind, name, _tbl, sql in schema:
            if kind == "table" or sql is None or name.startswith("sqlite_"):
                continue
            try:
                out.execute(sql).fetchall()
            except apsw.Error as err:
                schema_errors.append(f"{kind} {name}: {err}")
        out.execute("PRAGMA journal_mode = DELETE").fetchall()
    finally:
        out.close()
    # The writes above ran with synchronous=OFF for speed; make the result durable now.
    with open(dest, "rb") as handle:
        os.fsync(handle.fileno())
    return SalvageResult(source, dest, tables, tuple(schema_errors), 0.0, found)


#: An FTS5 table's index tables: derived from its content, rebuilt instead of copied.
_FTS5_DERIVED = ("_data", "_idx", "_docsize")
_FTS5 = re.compile(r"\s*CREATE\s+VIRTUAL\s+TABLE\s.*\bUSING\s+fts5\b", re.I | re.S)
#: A contentless FTS5 table (content='') has nothing to rebuild from: its index is copied.
_CONTENTLESS = re.compile(r"\bcontent\s*=\s*(''|\"\")", re.I)


def _shadow_tables(src: apsw.Connection) -> set[str]:
    """The shadow tables of the source's virtual tables (``PRAGMA table_list`` knows them)."""
    try:
        return {str(r[1]) for r in src.execute("PRAGMA main.table_list") if r[2] == "shadow"}
    except apsw.Error:
        return set()


def _columns(src: apsw.Connection, table: str) -> tuple[list[str], bool, bool]:
    """(insertable columns, has a rowid, the rowid is a named INTEGER PRIMARY KEY column)."""
    info: list[Any] = src.execute(f"PRAGMA table_xinfo({_q(table)})").fetchall()
    # hidden: 0 normal, 1 hidden (virtual tables), 2/3 generated (cannot be inserted).
    cols = [str(r[1]) for r in info if int(r[6]) == 0]
    pks = [r for r in info if int(r[5]) > 0]
    without_rowid = False
    try:
        src.execute(f"SELECT rowid FROM {_q(table)} LIMIT 0").fetchall()
    except apsw.SQLError:
        without_rowid = True
    alias = len(pks) == 1 and str(pks[0][2]).upper() == "INTEGER" and not without_rowid
    return cols, not without_rowid, alias


def _copy_table(src: apsw.Connection, out: apsw.Connection, table: str) -> TableSalvage:
    try:
        cols, has_rowid, alias = _columns(src, table)
    except apsw.Error as err:
        return TableSalvage(table, 0, (), f"columns unreadable: {err}")
    if not has_rowid:
        return _copy_without_rowid(src, out, table, cols)
    # With an INTEGER PRIMARY KEY the rowid is that column; otherwise keep the rowid too, so
    # rows can be compared with a backup by rowid.
    target_cols = (
        ", ".join(_q(c) for c in cols) if alias else "rowid, " + ", ".join(_q(c) for c in cols)
    )
    placeholders = ", ".join("?" for _ in range(len(cols) + (0 if alias else 1)))
    insert = f"INSERT OR IGNORE INTO {_q(table)} ({target_cols}) VALUES ({placeholders})"
    select = f"SELECT rowid, {_raw_columns(cols)} FROM {_q(table)}"
    got: set[int] = set()

    def take(sql: str, params: tuple[int, ...] = (), wanted: set[int] | None = None) -> None:
        try:
            for raw in src.execute(sql, params):
                row = _decode(raw, len(cols))
                rowid = int(row[0])
                if rowid in got or (wanted is not None and rowid not in wanted):
                    continue
                out.execute(insert, row[1:] if alias else row)
                got.add(rowid)
        except apsw.Error:
            pass  # keep what was read; the passes below go around the damage

    # 1. Scan forwards, then backwards, until the first damaged page (what .dump reaches).
    take(select)
    take(select + " ORDER BY rowid DESC")
    # 2. Every key the b-tree still yields (keys only: damaged records do not stop it), then
    #    the rows for keys not read yet, by range and then one seek per row.
    rowids, lost = _enumerate_rowids(src, table)
    missing = [r for r in rowids if r not in got]
    for lo, hi, wanted in _runs(missing):
        take(select + " WHERE rowid BETWEEN ? AND ? ORDER BY rowid", (lo, hi), wanted)
        for rowid in sorted(wanted - got):
            take(select + " WHERE rowid = ?", (rowid,))
            if rowid not in got:
                lost.append((rowid, rowid))
    return TableSalvage(table, len(got), tuple(_merge(lost)), None)


def _raw_columns(cols: list[str]) -> str:
    # Text is read as bytes plus a flag and decoded here with replacement: bytes flipped
    # inside a string then cost one character, not the row (or the rest of the scan).
    return ", ".join(
        f"CASE WHEN typeof({_q(c)}) = 'text' THEN CAST({_q(c)} AS BLOB) ELSE {_q(c)} END, "
        f"typeof({_q(c)}) = 'text'"
        for c in cols
    )


def _decode(raw: Any, ncols: int) -> tuple[Any, ...]:
    values: list[Any] = [raw[0]]
    for i in range(ncols):
        value, was_text = raw[1 + 2 * i], raw[2 + 2 * i]
        values.append(bytes(value).decode("utf-8", "replace") if was_text else value)
    return tuple(values)


def _enumerate_rowids(src: apsw.Connection, table: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Every rowid the b-tree still yields. Reading keys only never decodes a record, so a
    damaged record does not stop it; a damaged page does, and is bisected around."""
    found: set[int] = set()
    lost: list[tuple[int, int]] = []
    sql = f"SELECT rowid FROM {_q(table)} WHERE rowid BETWEEN ? AND ? ORDER BY rowid"
    # Explicit stack instead of recursion: each unreadable page costs ~64 levels. A damaged
    # interior page (or root) makes every probe below it fail, and bisecting that would
    # never end: after ``_PROBE_BUDGET`` failed probes the ranges left are declared lost
    # (the leaf page scan then looks for their rows).
    stack = [(_MIN_ROWID, _MAX_ROWID)]
    budget = _PROBE_BUDGET
    while stack:
        lo, hi = stack.pop()
        if budget <= 0:
            lost.append((lo, hi))
            continue
        last: int | None = None
        try:
            for (rowid,) in src.execute(sql, (lo, hi)):
                found.add(int(rowid))
                last = int(rowid)
            continue
        except apsw.Error:
            pass
        # Read backwards too (as .dump does): keys after the damage are reached from the end.
        first_back: int | None = None
        try:
            for (rowid,) in src.execute(sql + " DESC", (lo, hi)):
                found.add(int(rowid))
                first_back = int(rowid)
        except apsw.Error:
            pass
        budget -= 1
        start = lo if last is None else last + 1
        end = hi if first_back is None else first_back - 1
        if start > end:
            continue
        if start == end:
            lost.append((start, end))
            continue
        mid = start + (end - start) // 2
        stack.append((mid + 1, end))
        stack.append((start, mid))
    return sorted(found), lost


def _runs(rowids: list[int], size: int = 512) -> list[tuple[int, int, set[int]]]:
    """Group sorted rowids into (first, last, members) runs of at most ``size`` keys whose
    span stays small, so each run is one range read."""
    runs: list[tuple[int, int, set[int]]] = []
    current: list[int] = []
    for rowid in rowids:
        if current and (len(current) >= size or rowid - current[0] > 4 * size):
            runs.append((current[0], current[-1], set(current)))
            current = []
        current.append(rowid)
    if current:
        runs.append((current[0], current[-1], set(current)))
    return runs


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def _copy_without_rowid(
    src: apsw.Connection, out: apsw.Connection, table: str, cols: list[str]
) -> TableSalvage:
    col_sql = ", ".join(_q(c) for c in cols)
    insert = (
        f"INSERT OR IGNORE INTO {_q(table)} ({col_sql}) VALUES ({', '.join('?' for _ in cols)})"
    )
    rows = 0
    error = None
    for order in ("", " ORDER BY 1 DESC"):
        try:
            for row in src.execute(f"SELECT {col_sql} FROM {_q(table)}{order}"):
                out.execute(insert, row)
                rows += out.changes()
            break
        except apsw.Error as err:
            error = f"read stopped at a damaged page: {err}"
    return TableSalvage(table, rows, (), error)


def _copy_sequence(src: apsw.Connection, out: apsw.Connection) -> None:
    try:
        seq = src.execute("SELECT name, seq FROM sqlite_sequence").fetchall()
    except apsw.Error:
        return
    out.execute("DELETE FROM sqlite_sequence").fetchall()
    for name, value in seq:
        out.execute("INSERT INTO sqlite_sequence(name, seq) VALUES (?, ?)", (name, value))


# --- leaf pages read directly ----------------------------------------------------------------


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    """SQLite's big-endian base-128 varint at ``buf[i]``: (value, next offset)."""
    value = 0
    for k in range(8):
        byte = buf[i + k]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, i + k + 1
    return (value << 8) | buf[i + 8], i + 9


def _decode_record(payload: bytes) -> list[Any] | None:
    """The values of one record (file format 2.1), or None if it does not parse."""
    header_size, i = _varint(payload, 0)
    if header_size > len(payload) or header_size < 1:
        return None
    types = []
    while i < header_size:
        serial, i = _varint(payload, i)
        types.append(serial)
    values: list[Any] = []
    pos = header_size
    sizes = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8, 7: 8, 8: 0, 9: 0}
    for serial in types:
        if serial in (10, 11):
            return None
        size = sizes[serial] if serial < 12 else (serial - 12) // 2
        chunk = payload[pos : pos + size]
        if len(chunk) != size:
            return None
        pos += size
        if serial == 0:
            values.append(None)
        elif serial <= 6:
            values.append(int.from_bytes(chunk, "big", signed=True))
        elif serial == 7:
            values.append(struct.unpack(">d", chunk)[0])
        elif serial in (8, 9):
            values.append(serial - 8)
        elif serial % 2 == 0:
            values.append(bytes(chunk))
        else:
            values.append(chunk.decode("utf-8", "replace"))
    return values if pos == len(payload) else None


def _leaf_cells(page: bytes, offset: int, usable: int) -> list[tuple[int, list[Any]]]:
    """(rowid, values) of every cell on a table leaf page that parses and has no overflow."""
    count = int.from_bytes(page[offset + 3 : offset + 5], "big")
    max_local = usable - 35
    cells = []
    for k in range(count):
        ptr_at = offset + 8 + 2 * k
        if ptr_at + 2 > len(page):
            break
        ptr = int.from_bytes(page[ptr_at : ptr_at + 2], "big")
        if not offset + 8 <= ptr < usable:
            continue
        try:
            size, i = _varint(page, ptr)
            rowid, i = _varint(page, i)
        except IndexError:
            continue
        if size > max_local or i + size > usable:
            continue  # spills to overflow pages (or is garbage): not read here
        if rowid >= 2**63:
            rowid -= 2**64
        values = _decode_record(page[i : i + size])
        if values is not None:
            cells.append((rowid, values))
    return cells


def _scan_leaf_pages(
    src: apsw.Connection,
    out: apsw.Connection,
    copy: Path,
    tables: dict[str, TableSalvage],
    key: DatabaseKey | None = None,
) -> int:
    """Read every table leaf page of the file directly and keep the cells whose rowid falls in
    a range some table lost and whose field count fits that table: the rows under an
    unreadable interior page. They go to ``lost_and_found`` (a freed page can hold rows that
    were deleted on purpose, so they are never put back into the table itself)."""
    size_row: Any = src.execute("PRAGMA page_size").fetchall()[0][0]
    page_size = int(size_row)
    with open(copy, "rb") as handle:
        handle.seek(20)
        reserved = handle.read(1)[0]
    usable = page_size - reserved
    wanted: list[tuple[str, int, tuple[tuple[int, int], ...]]] = []
    for name, t in tables.items():
        if t.lost_ranges:
            ncols = len(src.execute(f"PRAGMA table_info({_q(name)})").fetchall())
            wanted.append((name, ncols, t.lost_ranges))
    found: list[tuple[str, int, int, list[Any]]] = []
    with open(copy, "rb") as handle:
        pgno = 0
        while page := handle.read(page_size):
            pgno += 1
            if key is not None and len(page) == page_size:
                # Decrypted here, page by page: one that does not authenticate is skipped.
                page = decrypt_page(key, page, pgno) or b""
            offset = 100 if pgno == 1 else 0
            if len(page) < page_size or page[offset] != 0x0D:
                continue
            for rowid, values in _leaf_cells(page, offset, usable):
                for name, ncols, ranges in wanted:
                    if len(values) <= ncols and any(lo <= rowid <= hi for lo, hi in ranges):
                        found.append((name, pgno, rowid, values))
                        break
    if not found:
        return 0
    width = max(len(v) for *_, v in found)
    cols = ", ".join(f"c{i}" for i in range(width))
    out.execute(
        "CREATE TABLE lost_and_found(id INTEGER PRIMARY KEY, table_guess TEXT, page INTEGER, "
        f"found_rowid INTEGER, nfield INTEGER, {cols})"
    )
    marks = ", ".join("?" for _ in range(width + 4))
    for name, pgno, rowid, values in found:
        padded = [*values, *([None] * (width - len(values)))]
        out.execute(
            f"INSERT INTO lost_and_found(table_guess, page, found_rowid, nfield, {cols}) "
            f"VALUES ({marks})",
            (name, pgno, rowid, len(values), *padded),
        )
    return len(found)
