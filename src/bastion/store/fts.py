"""FTS5 indexes: the damage SQLite's integrity pragmas do not see in them, and their rebuild.

``PRAGMA quick_check``/``integrity_check`` run FTS5's check of each index's inner consistency
(a garbled structure record, a truncated or garbled segment, a wrong ``_idx`` entry). They do
not compare an index with its external content table (SQLite 3.54's ``xIntegrity`` asks FTS5
for its check without the content comparison that the ``'integrity-check'`` command's rank 1
asks for), so an index that is consistent but wrong passes both: one emptied (a zeroed
structure record), one that missed rows written, deleted or changed with its triggers
bypassed, a damaged ``_docsize`` row or averages record. A search then answers wrong,
silently. FTS5's own command with rank 1 compares the index with the content table row by
row; but it is an INSERT, which a read-only connection refuses on the main schema, even in
a read transaction. It runs here on a reader all the same, on a copy of the index and its
content in the reader's temp schema (writable on any connection): no write lock is taken
and a database opened read-only is checked like any other.

Neither check notices a leaf page that lost its ``_idx`` entry (the b-tree of first terms
over each segment's leaves: FTS5 checks the entries present, not that every page with a
term has one), after which a search misses every term on that page and the pages after it.
:func:`unindexed_pages` reads that from the shadow tables on a reader.

Damage to the index alone (its content table sound) is repaired by rebuilding it from the
content table: :func:`rebuild_fts5` (``bastion db reindex``); :func:`repair_in_place` is that
rebuild and the check after it, for the daemon's start and ``bastion db recover``, where a
disk that refuses the rebuild is raised as what it is (:func:`rebuild_refused`) and never
taken for damage that a restore would mend.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw

from bastion.errors import BastionError, StoreBusy, StoreIOError, StoreKeyError
from bastion.store._errors import is_fts5_damage

if TYPE_CHECKING:
    from bastion.config import StoreConfig
    from bastion.store.crypt import DatabaseKey
    from bastion.store.engine import Database, ReadTx, WriteTx

__all__ = [
    "Fts5Check",
    "Fts5Table",
    "InPlaceRepair",
    "check_fts5",
    "fts5_table_named",
    "fts5_tables",
    "is_fts5_error",
    "is_fts5_finding",
    "rebuild_fts5",
    "rebuild_refused",
    "repair_in_place",
    "unindexed_pages",
]

_FTS5 = re.compile(r"\s*CREATE\s+VIRTUAL\s+TABLE\s.*\bUSING\s+fts5\b", re.I | re.S)
# ``content`` (never ``content_rowid``): a quoted or bare value.
_CONTENT = re.compile(r"""\bcontent\s*=\s*(?:'((?:[^']|'')*)'|"((?:[^"]|"")*)"|([\w.]+))""", re.I)

# Rowids of ``<t>_data`` (fts5_index.c): segid << 37 | dlidx << 36 | height << 31 | pgno.
# Leaf pages have dlidx 0 and height 0; segment ids are below 2**16 (tombstone pages of
# contentless_delete tables are at segid + 2**16).
_SEGID_SHIFT = 37
_LEAF_MASK = (1 << _SEGID_SHIFT) - (1 << 31)
_MAX_SEGID = 1 << 16


@dataclasses.dataclass(frozen=True, slots=True)
class Fts5Table:
    """One FTS5 table: its name and where its text lives (``content``: None for the table's
    own content, '' for a contentless index, else the external content table's name)."""

    name: str
    content: str | None
    #: Its CREATE VIRTUAL TABLE statement, as sqlite_schema keeps it.
    sql: str = ""

    @property
    def rebuildable(self) -> bool:
        """An index with its text somewhere (own or external) can be rebuilt from it; a
        contentless one cannot: its text is nowhere but in the index."""
        return self.content != ""

    def quoted(self, suffix: str = "") -> str:
        """The table's name (or a shadow table's: ``suffix`` ``_data``, ...) quoted for SQL."""
        return '"' + (self.name + suffix).replace('"', '""') + '"'


def _content_of(sql: str) -> str | None:
    match = _CONTENT.search(sql)
    return None if match is None else _value(match)


def _value(match: re.Match[str]) -> str:
    """An FTS5 option's value: quoted ('' or "" doubled inside) or bare."""
    single, double, bare = match.groups()
    if single is not None:
        return single.replace("''", "'")
    if double is not None:
        return double.replace('""', '"')
    return bare


def fts5_tables(tx: ReadTx) -> list[Fts5Table]:
    """The FTS5 tables of the main schema, by name."""
    rows = tx.query(
        "SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL%'"
        " ORDER BY name"
    )
    return [
        Fts5Table(str(name), _content_of(str(sql)), str(sql))
        for name, sql in rows
        if sql and _FTS5.match(str(sql))
    ]


def is_fts5_error(err: BaseException) -> bool:
    """An error FTS5 raised about its own index or configuration (``fts5: corrupt structure
    record ...``, ``invalid fts5 file format ... run 'rebuild'``), not a b-tree's nor a
    query's."""
    return is_fts5_damage(err)


def is_fts5_finding(row: str) -> bool:
    """A row of ``integrity_check`` (or of :func:`check_fts5`) about an FTS5 index only:
    FTS5's own words ("fts5: ...", "malformed inverted index for FTS5 table main.t")."""
    return row.startswith("fts5:") or "inverted index for FTS5 table" in row


def unindexed_pages(tx: ReadTx, table: Fts5Table, *, limit: int = 3) -> list[str]:
    """Findings for leaf pages of ``table``'s segments that hold a term but have no ``_idx``
    entry (a search never reaches their terms). Reads the shadow tables; writes nothing.

    A leaf page's header is two 16-bit offsets: its first rowid, then the end of its data
    (``szLeaf``); bytes past ``szLeaf`` are the page's term index, present only when a term
    starts on the page, and exactly those pages get an ``_idx`` entry (``pgno << 1 | dlidx``).
    """
    data, idx = table.quoted("_data"), table.quoted("_idx")
    indexed = {
        (int(segid), int(pgno) >> 1) for segid, pgno in tx.query(f"SELECT segid, pgno FROM {idx}")
    }
    missing: list[tuple[int, int]] = []
    for rowid, raw, size in tx.query(
        f"SELECT id, substr(block, 1, 4), length(block) FROM {data} "
        f"WHERE id >= ? AND id < ? AND (id & ?) = 0",
        (1 << _SEGID_SHIFT, _MAX_SEGID << _SEGID_SHIFT, _LEAF_MASK | (1 << 36)),
    ):
        head = bytes(raw or b"")
        if len(head) < 4:
            continue  # a page too short for its header: FTS5's own check reports it
        size_leaf = int.from_bytes(head[2:4], "big")
        if int(size) > size_leaf:
            key = (int(rowid) >> _SEGID_SHIFT, int(rowid) & ((1 << 31) - 1))
            if key not in indexed:
                missing.append(key)
    if not missing:
        return []
    shown = ", ".join(f"segment {s} page {p}" for s, p in missing[:limit])
    more = f" (and {len(missing) - limit} more)" if len(missing) > limit else ""
    return [
        f'fts5: {len(missing)} leaf page(s) of table "{table.name}" hold terms but have no '
        f"entry in {table.name}_idx ({shown}{more}): a search misses their terms"
    ]


#: The copy of an index a check builds in its reader's temp schema, and its content table's.
_COPY = "bastion_fts5_check"
_COPY_CONTENT = "bastion_fts5_content_copy"
_ARGS = re.compile(r"\bUSING\s+fts5\s*\((?P<args>.*)\)\s*;?\s*$", re.I | re.S)
_CONTENT_ROWID = re.compile(
    r"""\bcontent_rowid\s*=\s*(?:'((?:[^']|'')*)'|"((?:[^"]|"")*)"|(\w+))""", re.I
)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _NotComparable(Exception):
    """The index's declaration or its content does not let a copy stand for it: why."""


def _rowid_alias(tx: ReadTx, content: str, column: str) -> bool:
    """Whether ``column`` of table ``content`` is its rowid (an INTEGER PRIMARY KEY of a
    rowid table): its values are then distinct integers by construction."""
    sql = tx.scalar(
        "SELECT sql FROM main.sqlite_schema WHERE type = 'table' AND name = ?", (content,)
    )
    if sql is None or re.search(r"\bWITHOUT\s+ROWID\b", str(sql), re.I):
        return False  # a view, or a table without a rowid
    keys = [
        (str(r[1]), str(r[2]).upper())
        for r in tx.query(f"PRAGMA main.table_info({_q(content)})")
        if int(r[5])
    ]
    return len(keys) == 1 and keys[0][0].lower() == column.lower() and keys[0][1] == "INTEGER"


def _key_problem(tx: ReadTx, content: str, column: str) -> str | None:
    """Why the ``content_rowid`` column ``column`` cannot map each content row to one index
    row (FTS5 takes it for the rowid: values that are not distinct integers -- a NULL, a
    text, a real, a repeat -- leave index and content matched by nothing), or None."""
    if _rowid_alias(tx, content, column):
        return None
    col = f"T.{_q(column)}"
    odd = tx.scalar(
        f"SELECT count(*) FROM main.{_q(content)} AS T WHERE typeof({col}) != 'integer'"
    )
    if odd:
        return f"content_rowid {column} of {content} holds {odd} value(s) that are not integers"
    repeated = tx.scalar(
        f"SELECT count(*) FROM (SELECT 1 FROM main.{_q(content)} AS T GROUP BY {col} "
        "HAVING count(*) > 1)"
    )
    if repeated:
        return f"content_rowid {column} of {content} is not unique ({repeated} value(s) repeat)"
    return None


def _compare(tx: ReadTx, table: Fts5Table) -> str | None:
    """FTS5's ``'integrity-check'`` with rank 1 (plain for a contentless index), run on a
    copy of the index and of its content in this reader's temp schema: the command is an
    INSERT, which a read-only connection refuses on the main schema (even inside a read
    transaction), while its temp schema stays writable. The copy is of this transaction's
    snapshot, so index and content are compared as they are together; it costs a read of
    both into temp storage (~0.1x the check itself) and never takes the write lock. FTS5's
    message, or None when it passed."""
    match = _ARGS.search(table.sql)
    if match is None:
        return f'fts5: table "{table.name}": its declaration could not be read to check it'
    args = match.group("args")
    columns = [str(r[1]) for r in tx.query(f"PRAGMA main.table_info({table.quoted()})")]
    if table.content:
        # The copy indexes a temp table holding the content's rowid and indexed columns,
        # read as FTS5 reads them (``T."col"``: a bare "col" that names no column would be
        # taken for a string, copying text the content does not hold).
        args = _CONTENT.sub(f"content='{_COPY_CONTENT}'", args, count=1)
        found = _CONTENT_ROWID.search(args)
        rowid = _value(found) if found is not None else "rowid"
        cols = ", ".join(_q(c) for c in columns)
        read = ", ".join(f"T.{_q(c)}" for c in columns)
        key = "rowid" if rowid.lower() in ("rowid", "_rowid_", "oid") else _q(rowid)
        if key != "rowid" and (why := _key_problem(tx, table.content, rowid)) is not None:
            raise _NotComparable(why)
        declared = f"{key} INTEGER PRIMARY KEY, " if key != "rowid" else ""
        tx.query(f"CREATE TEMP TABLE {_COPY_CONTENT} ({declared}{cols})")
        tx.query(
            f"INSERT INTO temp.{_COPY_CONTENT} ({key}, {cols}) "
            f"SELECT T.{_q(rowid)}, {read} FROM main.{_q(table.content)} AS T"
        )
    tx.query(f"CREATE VIRTUAL TABLE temp.{_COPY} USING fts5({args})")
    for (shadow,) in tx.query(
        "SELECT name FROM temp.sqlite_schema WHERE type = 'table' AND name LIKE ? ESCAPE '\\'",
        (_COPY.replace("_", "\\_") + "\\_%",),
    ):
        source = table.quoted(str(shadow)[len(_COPY) :])
        tx.query(f"DELETE FROM temp.{_q(str(shadow))}")
        tx.query(f"INSERT INTO temp.{_q(str(shadow))} SELECT * FROM main.{source}")
    sql = (
        f"INSERT INTO temp.{_COPY} ({_COPY}, rank) VALUES ('integrity-check', 1)"
        if table.rebuildable
        else f"INSERT INTO temp.{_COPY} ({_COPY}) VALUES ('integrity-check')"
    )
    try:
        tx.query(sql)
    except (apsw.CorruptError, apsw.SQLError) as err:
        text = str(err).replace(_COPY, table.name)
        if not table.rebuildable:
            return text if text.startswith("fts5:") else f'fts5: table "{table.name}": {text}'
        against = "itself" if table.content is None else f"its content table {table.content}"
        return (
            f'fts5: the index of table "{table.name}" does not match {against} '
            f"(FTS5's integrity-check, 1: {text})"
        )
    return None


def _drop_copy(tx: ReadTx) -> None:
    for name in (_COPY, _COPY_CONTENT):
        with contextlib.suppress(apsw.Error):
            tx.query(f"DROP TABLE IF EXISTS temp.{name}")


@dataclasses.dataclass(frozen=True, slots=True)
class Fts5Check:
    """What :func:`check_fts5` found: rows like integrity_check's, the FTS5 tables, and
    whether FTS5's check against the content ran for every one (``skipped`` says why not)."""

    findings: tuple[str, ...]
    tables: tuple[str, ...]
    compared: bool
    skipped: str | None = None


def check_fts5(
    db: Database, *, broken: frozenset[str] = frozenset(), compare: bool = True
) -> Fts5Check:
    """The checks the integrity pragmas leave out, for every FTS5 table of ``db``, on a
    reader (nothing is written to the database, no write lock is taken, a database opened
    read-only is checked the same): leaf pages missing their ``_idx`` entry, then FTS5's
    integrity-check with rank 1 on a copy in the reader's temp schema (:func:`_compare`).
    ``broken`` names tables whose damage is already known (FTS5 cannot even open them): not
    checked again. A comparison the temp storage refused (full) is reported as not run, and
    so is every comparison of a database larger than ``store.fts_compare_max_mb``.
    ``compare=False`` (the quick check) looks for the lost ``_idx`` entries only: they cost
    a read of the leaf pages' headers (~2-4% of ``quick_check`` at 200,000 log lines),
    where the comparison reads and copies every indexed row."""
    every = db.read(fts5_tables)
    names = tuple(t.name for t in every)
    tables = [t for t in every if t.name not in broken]
    findings: list[str] = []
    skipped: list[str] = []
    limit_mb = db.config.fts_compare_max_mb
    if compare and limit_mb and tables:
        # The copy is of each index and its text: bounded by the file, WAL included. Past
        # the bound the comparison is not run, and the result says so (never a silent pass).
        sizes = db.file_sizes()
        size = sizes.get("db", 0) + sizes.get("wal", 0)
        if size > limit_mb * 1024 * 1024:
            compare = False
            skipped.append(
                f"{db.name} is {size / 1048576:.0f} MiB, over "
                f"store.fts_compare_max_mb = {limit_mb} (the copy the comparison makes would "
                "take as much temporary storage; raise it, or 0 for no limit, to compare)"
            )

    def check(tx: ReadTx, table: Fts5Table) -> None:
        try:
            findings.extend(unindexed_pages(tx, table))
        except apsw.SQLError as err:  # a shadow table dropped or reshaped
            findings.append(
                f'fts5: the shadow tables of table "{table.name}" are unreadable: {err}'
            )
            return
        if not compare:
            return
        try:
            problem = _compare(tx, table)
        except (apsw.FullError, apsw.IOError, apsw.CantOpenError) as err:
            skipped.append(f"{table.name}: temp storage refused the copy ({err})")
            return
        except apsw.CorruptError as err:
            # Reading the index's tables or its content for the copy met damaged pages
            # (integrity_check reports those pages too, which makes the repair a recovery).
            problem = f'fts5: table "{table.name}" could not be read to compare it: {err}'
        except _NotComparable as err:
            skipped.append(f"{table.name}: not compared with its content: {err}")
            return
        except apsw.InterruptError:
            raise
        except apsw.Error as err:
            # The index's declaration or its content table does not let a copy be made (a
            # content table dropped or without the declared columns, a view without a
            # rowid, a tokenizer this connection lacks): not known damage, not a pass.
            skipped.append(f"{table.name}: no copy could be made to compare it ({err})")
            return
        finally:
            _drop_copy(tx)
        if problem is not None:
            findings.append(problem)

    for table in tables:  # one read unit per index: a reader is not held for all of them

        def unit(tx: ReadTx, table: Fts5Table = table) -> None:
            check(tx, table)

        db.read(unit)
    return Fts5Check(
        tuple(findings),
        names,
        compared=compare and not skipped,
        skipped="; ".join(skipped) or None,
    )


def fts5_table_named(row: str) -> str | None:
    """The table an FTS5 finding or error names (``table "logs_fts"``, ``FTS5 table
    main.logs_fts``), or None."""
    match = re.search(r'table "((?:[^"]|"")+)"', row) or re.search(r"FTS5 table \w+\.(\S+)", row)
    return match.group(1).replace('""', '"') if match else None


def rebuild_fts5(db: Database, names: list[str] | None = None) -> list[dict[str, Any]]:
    """Rebuild FTS5 indexes from their content (``INSERT INTO t(t) VALUES('rebuild')``), each
    in its own write transaction: every FTS5 table of ``db``, or those in ``names``. A
    contentless index has nothing to be rebuilt from and is reported, not touched. Returns
    one entry per table: name, ``rebuilt`` and the seconds it took, or ``skipped`` and why.
    Raises the store's typed error when a rebuild fails (a content table that is itself
    damaged: ``StoreCorrupt``)."""
    tables = db.read(fts5_tables)
    if names is not None:
        known = {t.name for t in tables}
        unknown = [n for n in names if n not in known]
        if unknown:
            from bastion.errors import NotFound

            raise NotFound(
                f"no FTS5 table {', '.join(unknown)} in {db.path}",
                hint="FTS5 tables here: " + (", ".join(sorted(known)) or "none") + ".",
            )
        tables = [t for t in tables if t.name in names]
    out: list[dict[str, Any]] = []
    for table in tables:
        if not table.rebuildable:
            out.append(
                {
                    "table": table.name,
                    "rebuilt": False,
                    "skipped": "contentless: its text is only in the index",
                }
            )
            continue
        started = time.monotonic()

        def rebuild(tx: WriteTx, table: Fts5Table = table) -> None:
            quoted = table.quoted()
            try:
                tx.query(f"SELECT rowid FROM {quoted} LIMIT 1")
            except apsw.CorruptError:
                pass  # a garbled structure record: the rebuild replaces it
            except apsw.SQLError as err:
                if not is_fts5_error(err):
                    raise
                # A damaged or deleted version row in ``_config`` makes FTS5 refuse the
                # table before it reads any command, the rebuild too ("invalid fts5 file
                # format (found 0, expected 4 or 5) - run 'rebuild'"): the version it
                # writes for a new table (4) lets it open, and the rebuild rewrites the rest.
                tx.execute(
                    f"INSERT OR REPLACE INTO {table.quoted('_config')} (k, v) VALUES ('version', 4)"
                )
            tx.execute(f"INSERT INTO {quoted} ({quoted}) VALUES ('rebuild')")

        db.write(rebuild)
        out.append(
            {
                "table": table.name,
                "rebuilt": True,
                "seconds": round(time.monotonic() - started, 3),
            }
        )
    return out


#: What a rebuild can meet that says nothing about the file: the disk refused (full, a
#: quota, read-only media, a file or folder's mode), another writer kept the lock, the key
#: does not fit. Never a reason to quarantine the file or restore a backup over it.
_REFUSALS = (StoreIOError, StoreBusy, StoreKeyError)
_REFUSED = "cannot rebuild the full-text indexes: "


def rebuild_refused(err: BastionError, retry: str) -> BastionError | None:
    """``err`` told as the refusal of a rebuild of full-text indexes, when it is one of
    :data:`_REFUSALS`: the same error (its class, code and exit status), its message saying
    what was refused and its hint the fix, then ``retry`` (what rebuilds the index once the
    cause is fixed). None for an error that is not such a refusal (damage, a missing table)."""
    if not isinstance(err, _REFUSALS):
        return None
    if not err.message.startswith(_REFUSED):
        err.message = f"{_REFUSED}{err.message}"
        err.args = (err.message,)
        fix = f"{err.hint} " if err.hint else ""
        err.hint = (
            f"{fix}To retry, {retry}: it rebuilds the damaged full-text index from its table, "
            "and nothing is lost."
        )
    return err


@dataclasses.dataclass(frozen=True, slots=True)
class InPlaceRepair:
    """What :func:`repair_in_place` did: the indexes it rebuilt, whether the check after
    passed (``mended``), and when not, what still fails or why the rebuild could not run."""

    rebuilt: tuple[str, ...]
    mended: bool
    problems: tuple[str, ...] = ()
    #: The check run after the rebuild (``check_database``'s result), when it ran.
    check: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form `db recover --json` reports of a rebuild that did not mend."""
        return {
            "rebuilt": list(self.rebuilt),
            "mended": self.mended,
            "problems": list(self.problems),
        }


def repair_in_place(
    path: Path,
    config: StoreConfig,
    *,
    name: str,
    key: DatabaseKey | None,
    full: bool,
    retry: str,
    found: tuple[str, ...] | list[str] = (),
) -> InPlaceRepair:
    """Mend damage found in full-text indexes alone by rebuilding them where they are, then
    check the file again (``full``: integrity_check and the comparison; else quick_check):
    what the daemon does under ``store.on_corrupt = "recover"`` and ``bastion db recover``
    does before any quarantine. An index is derived data, so nothing is lost, where a restore
    would lose every write since the newest backup.

    Not mended (the rebuild failed on damage, or the check still finds some): the caller
    falls back to the full recovery. A refusal of the disk, the lock or the key is raised
    (:func:`rebuild_refused`, naming ``retry``), never returned: a full disk or a read-only
    file says nothing of the file's health, and recovering from it (a quarantine, a restore
    of an older backup) would lose the writes since. A failed rebuild is one rolled-back
    transaction: the file is as it was.

    ``found``: the check's findings; when each names its table, only those indexes are
    rebuilt (a rebuild writes the whole index again: no more than needed), else all."""
    from bastion.store.engine import Database
    from bastion.store.stats import check_database

    try:
        db = Database.open(path, config, name=name, create=False, key=key)
    except BastionError as err:
        if rebuild_refused(err, retry) is not None:
            raise
        return InPlaceRepair((), False, (f"the file did not open to rebuild it: {err}",))
    named = {fts5_table_named(row) for row in found}
    rebuilt: list[str] = []
    try:
        every = [t.name for t in db.read(fts5_tables)]
        if named and None not in named:
            every = [t for t in every if t in named]
        for table in every:
            try:
                done = rebuild_fts5(db, [table])
            except BastionError as err:
                if rebuild_refused(err, retry) is not None:
                    raise
                return InPlaceRepair(
                    tuple(rebuilt), False, (f'the rebuild of "{table}" failed: {err}',)
                )
            rebuilt.extend(str(r["table"]) for r in done if r.get("rebuilt"))
        after = check_database(db, full=full)
    except BastionError as err:
        if rebuild_refused(err, retry) is not None:
            raise
        return InPlaceRepair(tuple(rebuilt), False, (f"the check after the rebuild failed: {err}",))
    finally:
        db.close()
    if not after["ok"]:
        fk = after["foreign_key_violation_count"]
        shown = after["integrity"][:3] if not after["integrity_ok"] else []
        still = [*shown, *([f"{fk} foreign key violations"] if fk else [])]
        return InPlaceRepair(tuple(rebuilt), False, tuple(still), after)
    return InPlaceRepair(tuple(rebuilt), True, (), after)
