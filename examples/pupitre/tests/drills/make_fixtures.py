"""Make the prepared fixture databases of the corruption drills (seed 004, workstream 6).

    .venv/bin/python -m examples.pupitre.tests.drills.make_fixtures     # rewrites the fixtures

A real pupitre data directory is built (a ``main`` profile with 150 talks), a verified backup
is taken, one more talk is written after it, and the app is closed. Then each kind of damage
the open-time check tells apart is made on a copy of the profile's files, the way it happens
in the field (a page overwritten, a file cut short, a WAL deleted...). Each kind is a folder:
``<kind>/main.db.gz`` (and ``main.db-wal.gz``/``main.db-shm.gz`` where the damage involves
them) and ``expected.json``; ``backup/`` holds the backup and its manifest. Files are gzipped
(a profile is mostly empty pages): the folder stays small. ``tests/test_drills.py`` runs the
drill on every folder; it also runs this script into a temporary folder and checks that each
kind it makes is still classified as its name says, so the script cannot rot.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

HERE = Path(__file__).resolve().parent
TALKS = 150
AFTER_BACKUP = "written after the backup"


def talk_title(i: int) -> str:
    return f"talk {i:03d} " + "x" * 100


def _leaf_pages(path: Path, name: str) -> tuple[list[int], int]:
    with closing(sqlite3.connect(f"file:{path}?immutable=1", uri=True)) as conn:
        pages = [
            int(r[0])
            for r in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY path",
                (name,),
            )
        ]
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    return pages, page_size


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def smash_leaf(folder: Path) -> None:
    """A b-tree leaf page in the middle of ``talk_projects`` overwritten with garbage."""
    path = folder / "main.db"
    leaves, page_size = _leaf_pages(path, "talk_projects")
    _overwrite(path, (leaves[len(leaves) // 2] - 1) * page_size, b"\xa5" * page_size)


def smash_index(folder: Path) -> None:
    """A leaf page of an index (``idx_talk_projects_number``) overwritten with garbage."""
    path = folder / "main.db"
    leaves, page_size = _leaf_pages(path, "idx_talk_projects_number")
    _overwrite(path, (leaves[0] - 1) * page_size, b"\x5a" * page_size)


def smash_schema(folder: Path) -> None:
    """Page 1 past the 100-byte header (the schema table) overwritten: the header is fine,
    the schema unreadable."""
    path = folder / "main.db"
    _, page_size = _leaf_pages(path, "sqlite_schema")
    _overwrite(path, 100, b"\x00\xff" * ((page_size - 100) // 2))


def overwrite_header(folder: Path) -> None:
    """The first 100 bytes replaced (a stray write at offset 0)."""
    _overwrite(folder / "main.db", 0, b"not a database, overwritten by a stray write. " * 2 + b"..")


def truncate_mid_page(folder: Path) -> None:
    """Cut in the middle of a page (a copy interrupted, a full disk)."""
    path = folder / "main.db"
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size - 1000)


def truncate_pages(folder: Path) -> None:
    """Cut on a page boundary, to half the pages the header declares."""
    path = folder / "main.db"
    _, page_size = _leaf_pages(path, "talk_projects")
    pages = path.stat().st_size // page_size
    with open(path, "r+b") as handle:
        handle.truncate((pages // 2) * page_size)


def empty(folder: Path) -> None:
    """Truncated to 0 bytes (an editor or a script that "reset" the file)."""
    (folder / "main.db").write_bytes(b"")


def _with_uncheckpointed_wal(folder: Path) -> None:
    """Leave committed transactions in the WAL, as a crashed app does: copy the files while a
    connection that never checkpoints still has them open."""
    path = folder / "main.db"
    with tempfile.TemporaryDirectory() as tmp:
        live = Path(tmp) / "main.db"
        shutil.copyfile(path, live)
        conn = sqlite3.connect(live)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            for i in range(3):
                conn.execute(
                    "INSERT INTO talk_projects (title, is_training, created_at, talk_number) "
                    "VALUES (?, 0, 1.0, ?)",
                    (f"only in the wal {i}", 10_000 + i),
                )
                conn.commit()
            for suffix in ("", "-wal", "-shm"):
                shutil.copyfile(f"{live}{suffix}", f"{path}{suffix}")
        finally:
            conn.close()


def lose_wal(folder: Path) -> None:
    """The ``-wal`` deleted while the database was closed; the ``-shm`` still records its
    committed frames."""
    _with_uncheckpointed_wal(folder)
    (folder / "main.db-wal").unlink()


def truncate_wal(folder: Path) -> None:
    """The ``-wal`` cut to its header: its committed frames are gone."""
    _with_uncheckpointed_wal(folder)
    with open(folder / "main.db-wal", "r+b") as handle:
        handle.truncate(32)


#: folder name -> (damage, the kind the open-time check names, rows only in the salvage)
KINDS: dict[str, tuple[Callable[[Path], None], str, int | None]] = {
    "leaf-page-garbage": (smash_leaf, "corrupt", 1),
    "index-page-garbage": (smash_index, "corrupt", None),
    "schema-page-garbage": (smash_schema, "corrupt", None),
    "header-overwritten": (overwrite_header, "not_a_database", None),
    "truncated-mid-page": (truncate_mid_page, "truncated", None),
    "truncated-pages": (truncate_pages, "truncated", None),
    "emptied": (empty, "empty", None),
    "wal-deleted": (lose_wal, "wal_lost", None),
    "wal-truncated": (truncate_wal, "wal_lost", None),
}


def build_source(work: Path) -> tuple[Path, Path]:
    """A closed data directory with a backup: returns (profile file, backup file)."""
    from examples.pupitre.app import Pupitre
    from examples.pupitre.talk import repo as talk

    with Pupitre.open(work) as app:
        app.create_workspace("main", "Main")
        app.profile().write(
            lambda tx: [talk.create_project(tx, talk_title(i)) for i in range(TALKS)]
        )
        backup = app.backup_profile()
        app.profile().write(lambda tx: talk.create_project(tx, AFTER_BACKUP))
    return work / "profiles" / "main.db", backup.path


def _gzip(src: Path, dst: Path) -> None:
    # mtime=0: the same bytes give the same .gz (no churn in the repository).
    with open(src, "rb") as fin, gzip.GzipFile(dst, "wb", mtime=0) as fout:
        shutil.copyfileobj(fin, fout)


def make(out: Path) -> dict[str, str]:
    """Write every fixture folder into ``out``; returns ``kind folder -> expected kind``."""
    made: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        profile, backup = build_source(Path(tmp) / "pupitre")
        if out.exists():
            for child in out.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
        (out / "backup").mkdir(parents=True)
        _gzip(backup, out / "backup" / f"{backup.name}.gz")
        shutil.copyfile(f"{backup}.json", out / "backup" / f"{backup.name}.json")
        for name, (damage, kind, only_in_salvage) in KINDS.items():
            scratch = Path(tmp) / name
            scratch.mkdir()
            shutil.copyfile(profile, scratch / "main.db")
            damage(scratch)
            folder = out / name
            folder.mkdir()
            for suffix in ("", "-wal", "-shm"):
                source = scratch / f"main.db{suffix}"
                if source.exists():
                    _gzip(source, folder / f"main.db{suffix}.gz")
            expected = {
                "kind": kind,
                "damage": (damage.__doc__ or "").strip().splitlines()[0],
                "talks_in_backup": TALKS,
                "rows_only_in_salvage": only_in_salvage,
            }
            (folder / "expected.json").write_text(
                json.dumps(expected, indent=2, sort_keys=True) + "\n", encoding="utf-8"
            )
            made[name] = kind
    return made


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    for folder, kind in make(target).items():
        print(f"{folder}: {kind}")
