"""Seed 004 workstreams 1, 5 and 7: the connection posture verified at open for the global and
every profile database; local structured diagnostics; secrets kept out of SQLite, and neither
diagnostics nor backups nor quarantine copies leaking one (sentinel scan of every file)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.config import load_config
from bastion.vault import Vault
from examples.pupitre.app import Pupitre
from examples.pupitre.settings import repo as settings

SENTINEL = "sk-pupitreSENTINEL0123456789abcdef"


def test_posture_is_verified_on_the_global_and_every_profile_database(app: Pupitre) -> None:
    app.create_workspace("second", "Second", activate=False)
    dbs = [app.global_db, app.profile("main"), app.profile("second")]
    for db in dbs:
        # Read back from SQLite after being set (a mismatch would have been StorePostureError).
        assert db.posture.journal_mode == "WAL"
        assert db.posture.synchronous == "NORMAL"
        assert db.posture.foreign_keys is True
        assert db.posture.busy_timeout_ms >= 2000
        assert Path(f"{db.path}-wal").exists()
        assert (db.path.stat().st_mode & 0o777) == 0o600


def test_diagnostics_report_schema_migrations_integrity_and_fk(app: Pupitre) -> None:
    app.create_workspace("second", "Second", activate=False)
    diag = app.diagnostics()
    json.dumps(diag)  # structured: serializable as is, for a bug report
    by_name = {d["name"]: d for d in diag["databases"]}
    assert set(by_name) == {"global", "main", "second"}
    assert by_name["global"]["schema_version"] == "0001_workspaces"
    for name in ("main", "second"):
        entry = by_name[name]
        assert entry["schema_version"] == "0008_fk_on_update"
        assert entry["migrations"]["pending"] == []
        assert entry["migrations"]["problem"] is None
        assert entry["integrity_check"] == ["ok"]
        assert entry["foreign_key_check"] == []
        assert entry["posture"]["journal_mode"] == "WAL"


def test_diagnostics_show_a_foreign_key_violation_by_table_and_rowid(app: Pupitre) -> None:
    db = app.profile()
    # Only a connection with enforcement off can write this; diagnostics must still see it.
    db.run_outside_transaction(
        lambda tx: (
            tx.execute("PRAGMA foreign_keys = OFF"),
            tx.execute("INSERT INTO runs (id, project_id, created_at) VALUES (77, 404, 1.0)"),
            tx.execute("PRAGMA foreign_keys = ON"),
        )
    )
    entry = next(d for d in app.diagnostics()["databases"] if d["name"] == "main")
    assert entry["foreign_keys_ok"] is False
    assert {"table": "runs", "rowid": 77, "parent": "talk_projects"} in entry["foreign_key_check"]


@pytest.fixture
def vault(data_dir: Path) -> Iterator[Vault]:
    """bastion's encrypted-file vault (AES-256-GCM, key from the environment) in a bastion
    home inside the data directory, so the leak scan covers its files too."""
    home = data_dir / "bastion-home"
    home.mkdir(parents=True, mode=0o700)
    cfg = load_config(home, env={"BASTION_VAULT_BACKEND": "encrypted-file"})
    key = base64.b64encode(os.urandom(32)).decode()
    with Vault.open(cfg, env={"BASTION_VAULT_KEY": key}) as opened:
        yield opened


def test_credentials_are_refused_by_the_settings_boundary(app: Pupitre) -> None:
    db = app.profile()
    with pytest.raises(settings.SecretInSettings, match="vault") as info:
        db.write(lambda tx: settings.set_value(tx, "analysis.api_key", SENTINEL))
    assert SENTINEL not in str(info.value)
    with pytest.raises(settings.SecretInSettings):
        db.write(lambda tx: settings.set_value(tx, "ui.note", SENTINEL))
    db.write(lambda tx: settings.set_value(tx, "ui.theme", "dark"))
    assert settings.list_all(db) == {"ui.theme": "dark"}


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_no_secret_in_sqlite_backups_quarantine_or_diagnostics(
    app: Pupitre, vault: Vault, data_dir: Path
) -> None:
    reference = app.set_analysis_key(vault, SENTINEL)
    assert reference == "secret:pupitre:main/ANALYSIS_API_KEY"
    key = app.analysis_key(vault)
    assert key is not None
    assert key.reveal() == SENTINEL
    assert SENTINEL not in repr(key)

    app.backup_profile()
    diag = json.dumps(app.diagnostics())
    app.close()  # checkpoints the WALs into the files scanned below
    (data_dir / "diagnostics.json").write_text(diag, encoding="utf-8")

    needle = SENTINEL.encode()
    assert _files_containing(data_dir, needle) == []
    # Not base64'd or hex'd somewhere either.
    assert _files_containing(data_dir, base64.b64encode(needle)) == []
    assert _files_containing(data_dir, needle.hex().encode()) == []
    assert list(data_dir.rglob("*.db"))  # the scan did look at databases and backups
