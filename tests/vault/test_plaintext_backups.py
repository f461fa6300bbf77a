"""The plaintext copies imports keep: said where, recorded, listed by doctor, purged, or not made."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from bastion.cli import cli
from bastion.config import Config
from bastion.doctor import run_doctor
from bastion.vault import Vault
from bastion.vault.importer import import_file, migrate_bundled_json
from bastion.vault.plaintext_backups import purge, recorded

from .conftest import make_home, new_env_key
from .test_cli import cli_env, run  # noqa: F401 - the fixture is used by name

PLAIN = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"


def _env_file(tmp_path: Path) -> Path:
    path = tmp_path / "app" / ".env"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"OPENAI_API_KEY={PLAIN}\nPORT=8080\n")
    return path


def _copies(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".bastion-backup-*"))


def _plaintext_problems(cfg: Config) -> list[str]:
    return [p for p in run_doctor(cfg, full_check=False)["problems"] if "plaintext copy" in p]


def test_an_import_says_where_the_plaintext_copy_is_and_doctor_lists_it_until_purged(
    file_vault: Vault, file_cfg: Config, tmp_path: Path
) -> None:
    env = _env_file(tmp_path)
    report = import_file(file_vault, env)
    [copy] = _copies(env)
    assert PLAIN in copy.read_text()
    assert report.backup == str(copy.absolute())
    assert report.warning is not None
    assert str(copy.absolute()) in report.warning
    assert "plaintext" in report.warning
    assert "--purge-backups" in report.warning
    assert PLAIN not in report.warning
    assert [b.path for b in recorded(file_vault.db)] == [str(copy.absolute())]

    [problem] = _plaintext_problems(file_cfg)
    assert str(copy.absolute()) in problem
    assert "--purge-backups" in problem

    # Audit retention does not forget the record while the copy exists.
    file_vault.prune_audit(older_than_days=-1)
    assert [b.path for b in recorded(file_vault.db)] == [str(copy.absolute())]

    assert purge(file_vault, env, actor="test") == [str(copy.absolute())]
    assert _copies(env) == []
    assert recorded(file_vault.db) == []
    assert _plaintext_problems(file_cfg) == []
    ops = [e.operation for e in file_vault.audit_entries(limit=10)]
    assert "plaintext-backup-purged" in ops


def test_no_backup_keeps_no_copy(file_vault: Vault, tmp_path: Path) -> None:
    env = _env_file(tmp_path)
    report = import_file(file_vault, env, backup=False)
    assert report.rewritten
    assert report.backup is None
    assert report.warning is None
    assert _copies(env) == []
    assert PLAIN not in env.read_text()
    assert recorded(file_vault.db) == []


def test_the_bundle_migration_records_its_copy_too(file_vault: Vault, tmp_path: Path) -> None:
    record = tmp_path / "space.json"
    record.write_text(json.dumps({"name": "s", "secrets": {"openai": PLAIN}}))
    migrate_bundled_json(file_vault, record, scope="space:s")
    [copy] = _copies(record)
    assert [b.path for b in recorded(file_vault.db)] == [str(copy.absolute())]
    migrate_bundled_json(file_vault, record, scope="space:s", backup=False)  # nothing left
    record.write_text(json.dumps({"name": "s", "secrets": {"other": PLAIN + "x"}}))
    migrate_bundled_json(file_vault, record, scope="space:s", backup=False)
    assert len(_copies(record)) == 1


def test_purging_a_file_takes_unrecorded_copies_beside_it_and_leaves_others(
    file_vault: Vault, tmp_path: Path
) -> None:
    env = _env_file(tmp_path)
    legacy = env.with_name(env.name + ".bastion-backup-20240101T000000")  # an older version's
    legacy.write_text(f"OPENAI_API_KEY={PLAIN}\n")
    other = tmp_path / "other" / ".env"
    other.parent.mkdir()
    other.write_text(f"GITHUB_TOKEN=ghp_{'a1B2' * 9}\n")
    import_file(file_vault, env)
    import_file(file_vault, other)
    deleted = purge(file_vault, env, actor="test")
    assert len(deleted) == 2
    assert _copies(env) == []
    [left] = _copies(other)
    assert purge(file_vault, actor="test") == [str(left.absolute())]
    assert _copies(other) == []
    assert purge(file_vault, actor="test") == []


def test_cli_import_warns_no_backup_and_purge(cli_env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    env = _env_file(tmp_path)
    result = run(cli_env, "import", str(env))
    assert result.exit_code == 0, result.output
    [copy] = _copies(env)
    assert f"warning: {copy.absolute()} holds the plaintext values" in result.stdout
    assert "bastion secrets import --purge-backups" in result.stdout
    assert PLAIN not in result.output

    doctor = CliRunner().invoke(cli, ["doctor", "--json"], env=cli_env)
    problems = json.loads(doctor.stdout)["problems"]
    assert any(str(copy.absolute()) in p for p in problems)
    assert PLAIN not in doctor.output

    purged = run(cli_env, "import", "--purge-backups", "--json")
    assert purged.exit_code == 0, purged.output
    assert json.loads(purged.stdout) == {"deleted": [str(copy.absolute())]}
    assert _copies(env) == []

    second = _env_file(tmp_path)
    result = run(cli_env, "import", str(second), "--no-backup")
    assert result.exit_code == 0, result.output
    assert "no copy of the original was kept" in result.stdout
    assert _copies(second) == []

    missing = run(cli_env, "import")
    assert missing.exit_code == 2
    assert "--purge-backups" in missing.output


@pytest.mark.encrypted_rerun
def test_doctor_lists_copies_even_when_the_vault_backend_cannot_open(
    tmp_path: Path, store_env: dict[str, str]
) -> None:
    key = new_env_key()
    cfg = make_home(tmp_path / "home", BASTION_VAULT_BACKEND="encrypted-file", **store_env)
    env = _env_file(tmp_path)
    db_key = {"BASTION_DB_KEY": os.environ["BASTION_DB_KEY"]} if store_env else {}
    with Vault.open(cfg, env={"BASTION_VAULT_KEY": key, **db_key}) as vault:
        import_file(vault, env)
    # Without the key the backend is locked; the copy is still reported from vault.db.
    report = run_doctor(cfg, full_check=False)
    assert report["vault"]["active"]["available"] is False
    assert [b["path"] for b in report["plaintext_backups"]] == [str(_copies(env)[0].absolute())]
