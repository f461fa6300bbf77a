"""``bastion db backup|backups|restore|recover|prune|vacuum|stats|check`` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bastion.app import Home
from bastion.cli import cli
from bastion.config import load_config
from bastion.store.crypt import DatabaseKey
from tests.helpers import daemon_handshake_here, wait_until
from tests.store.opsfixtures import ITEMS_DDL, add_items, leaf_page_offset, overwrite

# Every test that takes db_key or store_env runs twice: plaintext, then encrypted
# (tests/conftest.py).
pytestmark = pytest.mark.encrypted_rerun


def _run(home: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--home", str(home), *args])
    return result.exit_code, result.stdout, result.stderr


def _json(home: Path, *args: str) -> Any:
    code, out, err = _run(home, *args, "--json")
    assert code == 0, (out, err)
    return json.loads(out)


def _home(tmp_path: Path, rows: int = 600, store_env: dict[str, str] | None = None) -> Path:
    cfg = load_config(tmp_path / "home", env=store_env or {})
    with Home.init(cfg) as home:
        home.db.write(lambda tx: tx.script(ITEMS_DDL))
        add_items(home.db, 0, rows)
    return cfg.home


def test_backup_list_and_restore_round_trip(tmp_path: Path, store_env: dict[str, str]) -> None:
    home = _home(tmp_path, store_env=store_env)
    made = _json(home, "db", "backup")
    assert made["row_counts"]["items"] == 600
    code, out, err = _run(home, "db", "backup")
    assert code == 0
    assert "verified: quick_check ok" in out
    assert "backup: 100%" in err, "progress lines on a non-TTY"
    listed = _json(home, "db", "backups", "--verify")
    assert len(listed["backups"]) == 2
    assert all(b["deep_verified"] for b in listed["backups"])
    code, out, _ = _run(home, "db", "backups")
    assert "verified" in out

    with Home.open(load_config(home, env=store_env)) as h:
        kinds = [r[0] for r in h.db.query("SELECT kind FROM events ORDER BY id")]
        assert kinds.count("backup.created") == 2
        add_items(h.db, 600, 10)
    code, out, _ = _run(home, "db", "restore", Path(made["path"]).name, "--yes")
    assert code == 0, out
    assert "restored:" in out
    assert "quick_check ok" in out
    assert "core 2 applied (last 0002_logs_search)" in out  # no dict repr
    assert "{'" not in out
    with Home.open(load_config(home, env=store_env)) as h:
        assert h.db.scalar("SELECT count(*) FROM items") == 600
    assert len(list((home / "quarantine").iterdir())) == 1


def test_restore_refuses_a_damaged_backup(tmp_path: Path, store_env: dict[str, str]) -> None:
    home = _home(tmp_path, store_env=store_env)
    made = _json(home, "db", "backup")
    overwrite(Path(made["path"]), 4096 * 2, os.urandom(100))
    before = (home / "bastion.db").read_bytes()
    code, out, _ = _run(home, "db", "restore", made["path"], "--yes", "--json")
    assert code != 0
    error = json.loads(out)
    assert error["code"] == "restore_refused"
    assert "SHA-256" in error["message"]
    assert (home / "bastion.db").read_bytes() == before


def test_restore_refuses_while_a_daemon_or_another_process_holds_the_db(
    tmp_path: Path, store_env: dict[str, str]
) -> None:
    home = _home(tmp_path, store_env=store_env)
    made = _json(home, "db", "backup")
    cfg = load_config(home, env=store_env)
    with daemon_handshake_here(cfg.run_dir):  # a daemon's: this process, on its port
        code, _, err = _run(home, "db", "restore", made["path"], "--yes")
        assert code != 0
        assert f"daemon (pid {os.getpid()})" in err
        assert "--stop-daemon" in err

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import base64, os, sys; from bastion.store.crypt import DatabaseKey; "
            "from bastion.store.crypt.cipher import connect; raw = os.environ.get('BASTION_DB_KEY'); "
            "c = connect(sys.argv[1], key=DatabaseKey(base64.b64decode(raw)) if raw else None); "
            "c.execute('select count(*) from items').fetchall(); print('open', flush=True); "
            "sys.stdin.read()",
            str(cfg.db_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        wait_until(lambda: holder.stdout.readline() == b"open\n", what="the holder to open the db")
        code, _, err = _run(home, "db", "restore", made["path"], "--yes")
        assert code != 0
        assert f"pid {holder.pid}" in err
    finally:
        holder.communicate(b"", timeout=30)


def test_recover_then_merge_salvage(
    tmp_path: Path, store_env: dict[str, str], db_key: DatabaseKey | None
) -> None:
    home = _home(tmp_path, 2000, store_env=store_env)
    _json(home, "db", "backup")
    cfg = load_config(home, env=store_env)
    with Home.open(cfg) as h:
        add_items(h.db, 2000, 300)
    healthy = _json(home, "db", "recover")
    assert healthy["recovered"] is False
    overwrite(cfg.db_path, leaf_page_offset(cfg.db_path, key=db_key) + 16, os.urandom(64))
    code, _, err = _run(home, "db", "stats")
    assert code == 74
    assert "bastion db recover" in err
    report = _json(home, "db", "recover")
    assert report["recovered"] is True
    assert report["placed"] == "backup"
    assert report["rows_only_in_salvage"]["items"] > 200
    merged = _json(home, "db", "recover", "--from-salvage")
    assert merged["inserted"]["items"] == report["rows_only_in_salvage"]["items"]
    check = _json(home, "db", "check")
    assert check["ok"] is True
    stats = _json(home, "db", "stats")
    assert stats["tables"]["items"]["rows"] == 2000 + merged["inserted"]["items"]
    assert stats["last_check"]["ok"] is True
    assert stats["last_backup"]["verified"] is True


def test_prune_vacuum_and_check(tmp_path: Path, store_env: dict[str, str]) -> None:
    home = _home(tmp_path, 10, store_env=store_env)
    pruned = _json(home, "db", "prune", "--dry-run")
    assert pruned["dry_run"] is True
    assert "logs" in pruned["tables"]
    vacuumed = _json(home, "db", "vacuum")
    assert vacuumed["mode"] in ("full", "incremental")
    code, out, _ = _run(home, "db", "check", "--quick")
    assert code == 0
    assert "quick_check: ok" in out


def test_recover_force_quarantines_a_healthy_database(
    tmp_path: Path, store_env: dict[str, str]
) -> None:
    home = _home(tmp_path, 50, store_env=store_env)
    _json(home, "db", "backup")
    report = _json(home, "db", "recover", "--force")
    assert report["recovered"] is True
    assert report["failed_check"]["detail"] == "recovery forced by the operator"
    assert report["placed"] == "backup"
    assert Path(report["quarantine_dir"], "bastion.db").exists()
    code, _, err = _run(home, "db", "recover", "--from-salvage", str(tmp_path / "nope.db"))
    assert code == 66
    assert "no salvaged copy" in err


def test_recover_suggests_merging_back_only_when_rows_were_salvaged(
    tmp_path: Path, store_env: dict[str, str], db_key: DatabaseKey | None
) -> None:
    home = _home(tmp_path, rows=50, store_env=store_env)
    assert _run(home, "db", "backup")[0] == 0
    (home / "bastion.db").write_bytes(b"not a database\n")  # nothing in it to salvage
    code, out, err = _run(home, "db", "recover")
    assert code == 0, err
    assert "salvaged:    0 rows" in out
    assert "--from-salvage" not in out

    home = _home(tmp_path / "second", 2000, store_env=store_env)
    assert _run(home, "db", "backup")[0] == 0
    cfg = load_config(home, env=store_env)
    with Home.open(cfg) as h:
        add_items(h.db, 2000, 300)  # rows the backup lacks
    overwrite(cfg.db_path, leaf_page_offset(cfg.db_path, key=db_key) + 16, os.urandom(64))
    code, out, err = _run(home, "db", "recover")
    assert code == 0, err
    assert "--from-salvage` merges the salvaged rows back" in out
