"""Seed 004 workstream 5: a corruption drill and the restore workflow, as an operator would
run them (docs/operations.md): detect at open, quarantine the broken file with its companions,
restore the newest verified backup, keep a salvaged copy and a report; restore on demand; a
damaged backup is refused without touching the live database."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from bastion.config import StoreConfig
from bastion.errors import RestoreRefused, StoreCorrupt
from bastion.store.backup import restore_backup
from examples.pupitre import migrations
from examples.pupitre.app import Pupitre, open_database
from examples.pupitre.talk import repo as talk


def _add_talks(app: Pupitre, titles: list[str]) -> None:
    app.profile().write(lambda tx: [talk.create_project(tx, t) for t in titles])


def _titles(app: Pupitre) -> list[str]:
    """Every talk title, read page by page (keyset on the talk number)."""
    titles: list[str] = []
    page = talk.list_projects(app.profile(), limit=500)
    while page:
        titles.extend(p.title for p in page)
        page = talk.list_projects(app.profile(), before=page[-1].talk_number, limit=500)
    return sorted(titles)


def _smash_a_leaf_page(path: Path, table: str) -> None:
    """Overwrite one leaf page in the middle of ``table``'s b-tree with garbage."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        leaves = [
            r[0]
            for r in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY path",
                (table,),
            )
        ]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    assert len(leaves) >= 3, "the drill needs a table spanning several pages"
    with open(path, "r+b") as handle:
        handle.seek((leaves[len(leaves) // 2] - 1) * page_size)
        handle.write(bytes([0xA5]) * page_size)


@pytest.mark.timeout(120)
def test_corruption_drill_quarantines_restores_and_reports(data_dir: Path) -> None:
    with Pupitre.open(data_dir) as app:
        app.create_workspace("main", "Main")
        _add_talks(app, [f"talk {i} " + "x" * 100 for i in range(2000)])
        backup = app.backup_profile()
        _add_talks(app, ["written after the backup"])
    profile = data_dir / "profiles" / "main.db"
    assert not Path(f"{profile}-wal").exists()  # closed cleanly: everything is in the file
    _smash_a_leaf_page(profile, "talk_projects")

    with Pupitre.open(data_dir) as app:
        db = app.profile()  # the open-time check fails; recovery runs; the app keeps going
        assert len(app.recoveries) == 1
        report = app.recoveries[0]
        assert report.check.kind.value == "corrupt"
        assert report.restored_from == backup.path
        assert report.placed == "backup"
        # The broken file is quarantined, never deleted, beside the report and the salvage.
        qdir = report.quarantine_dir
        assert (qdir / "main.db").exists()
        assert (qdir / "report.json").exists()
        on_disk = json.loads((qdir / "report.json").read_text(encoding="utf-8"))
        assert on_disk["restored_from"] == str(backup.path)
        assert on_disk["rows_in_backup"]["talk_projects"] == 2000
        # The talk written after the backup is not lost for good: the salvaged copy has it,
        # ready to merge back (`bastion db recover --from-salvage`).
        assert report.rows_only_in_salvage.get("talk_projects") == 1
        assert report.rows_salvaged["talk_projects"] < 2001  # the smashed page's rows are gone
        # The restored database is the backup: whole, migrated, consistent.
        assert _titles(app) == sorted(f"talk {i} " + "x" * 100 for i in range(2000))
        assert db.query("PRAGMA integrity_check") == [("ok",)]
        assert db.query("PRAGMA foreign_key_check") == []
        diag = app.diagnostics()
        assert all(d["integrity_ok"] and d["foreign_keys_ok"] for d in diag["databases"])

        # The operator's last step: merge the newer rows back from the salvaged copy.
        merged = app.merge_salvaged("main")
        assert merged.inserted["talk_projects"] == 1
        assert merged.conflicts.get("talk_projects", 0) == 0
        assert "written after the backup" in _titles(app)
        assert db.query("PRAGMA foreign_key_check") == []


def test_refuse_mode_names_the_file_and_touches_nothing(data_dir: Path) -> None:
    with Pupitre.open(data_dir) as app:
        app.create_workspace("main", "Main")
        _add_talks(app, [f"talk {i} " + "x" * 100 for i in range(200)])
    profile = data_dir / "profiles" / "main.db"
    _smash_a_leaf_page(profile, "talk_projects")
    before = profile.read_bytes()
    with pytest.raises(StoreCorrupt, match=r"main\.db"):
        open_database(
            profile,
            migrations.profile_namespace(),
            backups_dir=data_dir / "backups" / "main",
            quarantine_dir=data_dir / "quarantine" / "main",
            config=StoreConfig(),
            recover_corrupt=False,
        )
    assert profile.read_bytes() == before


def test_restore_workflow_puts_a_backup_back_and_keeps_the_replaced_file(data_dir: Path) -> None:
    with Pupitre.open(data_dir) as app:
        app.create_workspace("main", "Main")
        _add_talks(app, ["keep me"])
        backup = app.backup_profile()
        # The user deletes a talk by mistake.
        app.profile().write(lambda tx: tx.execute("DELETE FROM talk_projects"))
        app.close_profile("main")  # a restore needs the database closed
        result = restore_backup(
            backup.path, app.profile_path("main"), data_dir / "quarantine" / "main"
        )
        assert _titles(app) == ["keep me"]
        assert any(p.name == "main.db" for p in result.quarantined)
        assert (result.quarantine_dir / "restore.json").exists()


def test_a_damaged_backup_is_refused_and_the_live_database_untouched(data_dir: Path) -> None:
    with Pupitre.open(data_dir) as app:
        app.create_workspace("main", "Main")
        _add_talks(app, ["live"])
        backup = app.backup_profile()
        app.close_profile("main")
        live = app.profile_path("main")
        before = live.read_bytes()
        with open(backup.path, "r+b") as handle:
            handle.seek(4096 + 100)
            handle.write(b"\x00garbage\x00" * 32)
        with pytest.raises(RestoreRefused):
            restore_backup(backup.path, live, data_dir / "quarantine" / "main")
        assert live.read_bytes() == before
        assert _titles(app) == ["live"]
