"""Operator workflows on pupitre's own databases with bastion's CLI (seed 004, workstream 5:
"backup/restore is testable and documented in operations docs").

``bastion --home <pupitre data dir> db ...`` must create nothing that is not an operator's
request inside the app's directory (no ``bastion.db``, ``run/``, ``.bastion-home``), and
``--db profiles/main`` names a profile database; backups land where the app keeps them
(``backups/<db name>/``), so the app and the operator see one set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from bastion.cli import cli
from examples.pupitre.app import Pupitre
from examples.pupitre.talk import repo as talk


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _cli(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--home", str(root), *args])
    return result.exit_code, result.stdout, result.stderr


def _json(root: Path, *args: str) -> Any:
    code, out, err = _cli(root, *args, "--json")
    assert code == 0, (out, err)
    return json.loads(out)


def _closed_app(data_dir: Path) -> None:
    with Pupitre.open(data_dir) as app:
        app.create_workspace("main", "Main")
        app.profile("main").write(lambda tx: talk.create_project(tx, "keynote"))


def test_bastion_db_status_on_a_pupitre_directory_creates_nothing(data_dir: Path) -> None:
    _closed_app(data_dir)
    before = _tree(data_dir)

    code, _, err = _cli(data_dir, "db", "status")
    assert code == 66, err
    assert "not a bastion home" in err
    assert "nothing was created" in err
    assert "profiles/main.db" in err  # what IS there, to pick with --db

    status = _json(data_dir, "db", "status", "--db", "profiles/main")
    assert status["database"] == str(data_dir / "profiles" / "main.db")
    assert [m["namespace"] for m in status["migrations"]] == ["pupitre"]
    assert status["migrations"][0]["applied"][-1] == status["migrations"][0]["last_applied"]
    assert _json(data_dir, "db", "check", "--db", "profiles/main")["ok"] is True
    assert _json(data_dir, "db", "status", "--db", "global")["migrations"][0]["namespace"] == (
        "pupitre_global"
    )

    assert _tree(data_dir) == before
    for made in ("bastion.db", "vault.db", "run", ".bastion-home"):
        assert not (data_dir / made).exists()


def test_operator_backup_and_restore_of_a_profile(data_dir: Path) -> None:
    _closed_app(data_dir)
    made = _json(data_dir, "db", "backup", "--db", "profiles/main")
    assert Path(made["path"]).parent == data_dir / "backups" / "main"

    with Pupitre.open(data_dir) as app:
        app.profile("main").write(lambda tx: talk.create_project(tx, "draft"))

    restored = _json(
        data_dir, "db", "restore", Path(made["path"]).name, "--db", "profiles/main", "--yes"
    )
    assert restored["checks"]["integrity_ok"] is True
    with Pupitre.open(data_dir) as app:
        titles = [p.title for p in talk.list_projects(app.profile("main"), limit=10)]
    assert titles == ["keynote"]
    assert not (data_dir / "bastion.db").exists()
    assert not (data_dir / "run").exists()


HOLDER = """
import sys
from examples.pupitre.app import Pupitre

app = Pupitre.open(sys.argv[1])
app.profile("main")
print("ready", flush=True)
sys.stdin.readline()
app.close()
"""


def test_restore_and_recover_refuse_a_profile_the_app_has_open(data_dir: Path) -> None:
    _closed_app(data_dir)
    made = _json(data_dir, "db", "backup", "--db", "profiles/main")
    live = data_dir / "profiles" / "main.db"
    root = Path(__file__).resolve().parents[3]
    app = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data_dir)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert app.stdout is not None
        assert app.stdout.readline().strip() == "ready"
        before = live.read_bytes()
        for args in (
            ("db", "restore", Path(made["path"]).name, "--db", "profiles/main", "--yes"),
            ("db", "recover", "--force", "--db", "profiles/main"),
        ):
            code, _, err = _cli(data_dir, *args)
            assert code != 0, args
            assert "is open in other processes" in err
            assert f"(pid {app.pid})" in err
            assert "Traceback" not in err
        assert live.read_bytes() == before
        assert not list((data_dir / "quarantine").rglob("*.db"))
    finally:
        assert app.stdin is not None
        app.stdin.write("\n")
        app.stdin.close()
        assert app.wait(timeout=60) == 0
        if app.stdout is not None:
            app.stdout.close()
    restored = _json(
        data_dir, "db", "restore", Path(made["path"]).name, "--db", "profiles/main", "--yes"
    )
    assert restored["checks"]["integrity_ok"] is True
