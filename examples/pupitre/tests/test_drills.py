"""Seed 004 workstream 6: corruption drills on prepared fixture databases.

``drills/`` holds, for each kind of damage the open-time check tells apart, a damaged copy of
a real profile (made by ``drills/make_fixtures.py``, checked in) and the verified backup
taken before the damage. Each drill puts the damaged files in place of a profile, opens the
app as a user would, and checks the documented recovery: the damage is named, the files are
quarantined together (never deleted), the backup is restored, the app keeps working on a
consistent database, and rows written after the backup come back from the salvage where the
damage left them readable."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from bastion.config import StoreConfig
from bastion.store.recovery import open_check
from examples.pupitre.app import Pupitre
from examples.pupitre.diagnostics import repo as checks
from examples.pupitre.talk import repo as talk
from examples.pupitre.tests.drills import make_fixtures

DRILLS = Path(__file__).parent / "drills"
KINDS = sorted(p.name for p in DRILLS.iterdir() if (p / "expected.json").exists())


def _gunzip(src: Path, dst: Path) -> None:
    with gzip.open(src, "rb") as fin, open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    dst.chmod(0o600)


def _lay_out(fixture: Path, data_dir: Path) -> None:
    """A data directory whose ``main`` profile is the damaged fixture, with its backup."""
    with Pupitre.open(data_dir) as app:
        app.create_workspace("main", "Main")
    profile = data_dir / "profiles" / "main.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{profile}{suffix}").unlink(missing_ok=True)
        packed = fixture / f"main.db{suffix}.gz"
        if packed.exists():
            _gunzip(packed, Path(f"{profile}{suffix}"))
    backups = data_dir / "backups" / "main"
    shutil.rmtree(backups, ignore_errors=True)  # only the fixture's backup: the newest
    backups.mkdir(mode=0o700, parents=True)
    for item in (DRILLS / "backup").iterdir():
        if item.suffix == ".gz":
            _gunzip(item, backups / item.name.removesuffix(".gz"))
        else:
            shutil.copyfile(item, backups / item.name)


def _titles(app: Pupitre) -> list[str]:
    return sorted(p.title for p in talk.list_projects(app.profile(), limit=10_000))


def test_every_damage_kind_has_a_fixture() -> None:
    assert set(KINDS) == set(make_fixtures.KINDS)
    kinds = {json.loads((DRILLS / k / "expected.json").read_text())["kind"] for k in KINDS}
    assert kinds == {"corrupt", "not_a_database", "truncated", "empty", "wal_lost"}
    total = sum(f.stat().st_size for f in DRILLS.rglob("*") if f.is_file())
    assert total < 200_000  # small enough to keep in the repository


@pytest.mark.parametrize("kind", KINDS)
def test_drill(kind: str, data_dir: Path) -> None:
    fixture = DRILLS / kind
    expected = json.loads((fixture / "expected.json").read_text(encoding="utf-8"))
    _lay_out(fixture, data_dir)
    profile = data_dir / "profiles" / "main.db"
    damaged = {
        p.name: p.read_bytes() for p in profile.parent.iterdir() if p.name.startswith("main.db")
    }

    with Pupitre.open(data_dir) as app:
        db = app.profile()  # the open-time check fails, recovery runs, the app keeps going
        assert len(app.recoveries) == 1
        report = app.recoveries[0]
        assert report.check.kind.value == expected["kind"], report.check.detail
        assert report.placed == "backup"
        assert report.restored_from is not None
        assert report.restored_from.parent == data_dir / "backups" / "main"
        # Quarantined together, byte for byte: nothing of the damaged files is lost.
        moved = {p.name: p.read_bytes() for p in report.quarantine_dir.glob("main.db*")}
        assert {name: moved.get(name) for name in damaged} == damaged
        # Anything more is what the read-only open-time check itself left beside the file
        # (an empty -wal and its -shm, since c6f8545): moved with it, never damage evidence.
        extra = {name: moved[name] for name in moved.keys() - damaged.keys()}
        assert set(extra) <= {"main.db-wal", "main.db-shm"}, sorted(extra)
        assert extra.get("main.db-wal", b"") == b""
        assert (
            json.loads((report.quarantine_dir / "report.json").read_text())["failed_check"]["kind"]
            == expected["kind"]
        )
        # The restored profile is the backup: whole, consistent, usable.
        titles = _titles(app)
        assert titles == sorted(
            make_fixtures.talk_title(i) for i in range(expected["talks_in_backup"])
        )
        assert checks.integrity_check(db) == ["ok"]
        assert checks.foreign_key_check(db) == []
        if expected["rows_only_in_salvage"]:
            assert report.rows_only_in_salvage["talk_projects"] == expected["rows_only_in_salvage"]
            merged = app.merge_salvaged("main")
            assert merged.inserted["talk_projects"] >= expected["rows_only_in_salvage"]
            assert make_fixtures.AFTER_BACKUP in _titles(app)
            assert checks.foreign_key_check(db) == []
        db.write(lambda tx: talk.create_project(tx, "after the drill"))
    # And the next open finds nothing wrong.
    with Pupitre.open(data_dir) as app:
        app.profile()
        assert app.recoveries == []


@pytest.mark.slow
def test_the_script_still_makes_every_kind(tmp_path: Path) -> None:
    """The checked-in fixtures can be made again: each kind the script makes now is still
    classified as its name says."""
    made = make_fixtures.make(tmp_path / "drills")
    for name, kind in made.items():
        folder = tmp_path / "check" / name
        folder.mkdir(parents=True)
        for packed in (tmp_path / "drills" / name).glob("*.gz"):
            _gunzip(packed, folder / packed.name.removesuffix(".gz"))
        check = open_check(folder / "main.db", StoreConfig(), expected=True)
        assert check.kind.value == kind, (name, check.detail)
