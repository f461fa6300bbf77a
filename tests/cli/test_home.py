"""``bastion init`` and ``bastion db status`` in-process, asserting output and exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner

from bastion.cli import cli


def _run(home: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_init_then_status(tmp_path: Path) -> None:
    home = tmp_path / "home"
    code, out, _ = _run(home, "init")
    assert code == 0
    assert f"home:     {home}" in out
    assert home.stat().st_mode & 0o777 == 0o700
    for sub in ("backups", "quarantine", "services", "run"):
        assert (home / sub).stat().st_mode & 0o777 == 0o700
    assert (home / "bastion.db").stat().st_mode & 0o777 == 0o600

    code, out, _ = _run(home, "db", "status", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["database"] == str(home / "bastion.db")
    assert data["posture"]["journal_mode"] == "WAL"
    assert data["posture"]["foreign_keys"] is True
    assert data["sqlite_version"].startswith("3.")

    code, out, _ = _run(home, "db", "status")
    assert code == 0
    assert "journal_mode:  WAL" in out


def test_status_without_home_is_a_clear_error(tmp_path: Path) -> None:
    code, _, err = _run(tmp_path / "missing", "db", "status")
    assert code == 66  # HomeNotFound: not there, like a missing secret or setting
    assert f"no bastion home at {tmp_path / 'missing'}" in err
    assert "bastion init" in err
    assert "--home" in err
    assert "BASTION_HOME" in err


def test_not_a_database_is_refused_with_hint(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert _run(home, "init")[0] == 0
    (home / "bastion.db").write_bytes(b"garbage" * 100)
    code, out, err = _run(home, "db", "status", "--json")
    assert code != 0
    assert json.loads(out)["code"] == "store_not_a_database"
    code, _, err = _run(home, "db", "status")
    assert "not an SQLite database" in err
    assert "hint:" in err


def test_insecure_home_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, 0o777)
    code, _, err = _run(home, "init")
    assert code == 78
    assert "chmod 700" in err


def test_init_on_an_existing_loose_folder_says_what_doctor_would_flag(tmp_path: Path) -> None:
    """An existing folder given as the home keeps its mode, and init says what is wrong with it
    and the fix (it said nothing, while `doctor` then flagged the same folder)."""
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    code, out, err = _run(home, "init")
    assert code == 0
    assert f"home:     {home}" in out
    assert (
        f"warning: {home}: mode 0755, expected 0700: other users can list it "
        f"(chmod 700 {home}, or `bastion doctor --fix`)"
    ) in err
    assert home.stat().st_mode & 0o777 == 0o755  # said, not changed
    code, out, _ = _run(home, "init", "--json")
    assert json.loads(out)["warnings"] == [
        f"{home}: mode 0755, expected 0700: other users can list it "
        f"(chmod 700 {home}, or `bastion doctor --fix`)"
    ]
    code, out, _ = _run(home, "doctor")
    assert f"{home}: mode 0755, expected 0700: other users can list it" in out
    os.chmod(home, 0o700)
    code, out, err = _run(home, "init", "--json")
    assert json.loads(out)["warnings"] == []
    assert "warning" not in err
