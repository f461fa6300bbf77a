"""Seed 004 workstream 7: "threat-model local data at rest and recovery artifacts". The README's
threat model promises, for every file pupitre and bastion leave in the data directory (the
databases and their WAL, pre-migration, on-demand, scheduled and operator backups with their
manifests and status files, quarantined files with ``salvaged.db`` and ``report.json``,
deleted workspaces in ``trash/``, imported audio): owner-only modes (0600 files in 0700
folders) against other local users, and no credential in any of them (sentinel scan, also
base64 and hex) against backups copied elsewhere."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

from click.testing import CliRunner

from bastion.cli import cli
from bastion.config import load_config
from bastion.vault import Vault
from examples.pupitre.app import Pupitre
from examples.pupitre.talk import repo as talk
from examples.pupitre.upkeep import BACKUP_JOB

SENTINEL = "sk-pupitreTHREAT-0123456789abcdef"


def _smash_a_leaf_page(path: Path, table: str) -> None:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        leaves = [
            r[0]
            for r in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY path",
                (table,),
            )
        ]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    assert len(leaves) >= 3
    with open(path, "r+b") as handle:
        handle.seek((leaves[len(leaves) // 2] - 1) * page_size)
        handle.write(bytes([0xA5]) * page_size)


def _pack(root: Path) -> Path:
    folder = root / "pack"
    folder.mkdir()
    (folder / "take.wav").write_bytes(b"RIFF....WAVEfmt " + bytes(2048))
    manifest = {
        "title": "Imported",
        "outline": "Hook",
        "audio": "take.wav",
        "duration_s": 12.0,
        "reviewer": "ana",
        "body": "ok",
    }
    (folder / "review.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def _every_artifact(data_dir: Path, tmp_path: Path) -> None:
    """Make every kind of file the data directory can hold, the credential set in the vault."""
    app = Pupitre.open(data_dir)
    home = data_dir / "bastion-home"  # the vault's files are scanned too
    home.mkdir(mode=0o700)
    cfg = load_config(home, env={"BASTION_VAULT_BACKEND": "encrypted-file"})
    key = base64.b64encode(os.urandom(32)).decode()
    with app, Vault.open(cfg, env={"BASTION_VAULT_KEY": key}) as vault:
        app.create_workspace("main", "Main")
        app.set_analysis_key(vault, SENTINEL)
        app.profile().write(
            lambda tx: [talk.create_project(tx, f"talk {i} " + "x" * 100) for i in range(2000)]
        )
        app.import_peer_review(_pack(tmp_path))  # artifacts/main/...
        app.backup_profile()  # on demand
        app.start_backups(first_run_in_s=3600).run_now(BACKUP_JOB)  # scheduled + status files
        app.create_workspace("gone", "Gone", activate=False)
        app.profile("gone")
        app.delete_workspace("gone")  # its files move to trash/
        (data_dir / "diagnostics.json").write_text(json.dumps(app.diagnostics()))
    # The operator's backup with bastion's CLI.
    made = CliRunner().invoke(
        cli, ["--home", str(data_dir), "db", "backup", "--db", "profiles/main"]
    )
    assert made.exit_code == 0, made.output
    # Damage, then the recovery's artifacts: quarantine/main/<utc>/ with the broken file,
    # salvaged.db and report.json.
    _smash_a_leaf_page(data_dir / "profiles" / "main.db", "talk_projects")
    with Pupitre.open(data_dir) as app:
        app.profile()
        assert len(app.recoveries) == 1


def test_every_file_in_the_data_directory_is_owner_only(data_dir: Path, tmp_path: Path) -> None:
    _every_artifact(data_dir, tmp_path)
    kinds = {p.relative_to(data_dir).parts[0] for p in data_dir.rglob("*")}
    assert {"backups", "quarantine", "trash", "artifacts", "profiles", "global.db"} <= kinds
    assert list((data_dir / "quarantine").rglob("salvaged.db"))
    assert list((data_dir / "quarantine").rglob("report.json"))
    assert list((data_dir / "backups").rglob("*.db.json"))
    assert list((data_dir / "backups").rglob(".*.status.json"))
    loose = []
    for path in [data_dir, *data_dir.rglob("*")]:
        if path.name == "diagnostics.json":
            continue  # written by this test, not by the app
        mode = stat.S_IMODE(path.stat().st_mode)
        want = 0o700 if path.is_dir() else 0o600
        if mode & ~want:
            loose.append(f"{path.relative_to(data_dir)}: {oct(mode)}")
    assert loose == []


def test_no_credential_in_any_file_at_rest_or_in_recovery(data_dir: Path, tmp_path: Path) -> None:
    _every_artifact(data_dir, tmp_path)
    needles = [
        SENTINEL.encode(),
        base64.b64encode(SENTINEL.encode()),
        SENTINEL.encode().hex().encode(),
    ]
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert len(files) >= 15
    hits = [str(p.relative_to(data_dir)) for p in files for n in needles if n in p.read_bytes()]
    assert hits == []
