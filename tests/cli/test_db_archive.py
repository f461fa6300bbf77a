"""``bastion db timeline`` and ``bastion db restore --at`` end to end."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bastion.app import Home
from bastion.cli import cli
from bastion.config import load_config
from tests.helpers import daemon_handshake_here
from tests.store.archive.support import wait_for_base


def _run(home: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--home", str(home), *args])
    return result.exit_code, result.stdout, result.stderr


def _json(home: Path, *args: str) -> Any:
    code, out, err = _run(home, *args, "--json")
    assert code == 0, (out, err)
    return json.loads(out)


def _archived_home(
    tmp_path: Path, store_env: dict[str, str] | None = None
) -> tuple[Path, float, float]:
    """A home whose settings changed twice with archiving on; returns the two instants."""
    cfg = load_config(tmp_path / "home", env=store_env or {})
    with Home.init(cfg) as home:
        home.start_archiving()
        wait_for_base(cfg.archive_dir, "bastion")
        home.settings.set("colour", "blue")
        first = time.time()
        time.sleep(0.01)  # two commits apart in time: the instant between them is unambiguous
        home.settings.set("colour", "green")
        second = time.time()
    return cfg.home, first, second


def _colour(home: Path, store_env: dict[str, str] | None = None) -> Any:
    with Home.open(load_config(home, env=store_env or {})) as h:
        return h.settings.get("colour")


def test_timeline_lists_the_restorable_range(tmp_path: Path) -> None:
    home, first, second = _archived_home(tmp_path)
    data = _json(home, "db", "timeline")
    [gen] = data["generations"]
    start = dt.datetime.fromisoformat(gen["restorable_from"]).timestamp()
    end = dt.datetime.fromisoformat(gen["restorable_to"]).timestamp()
    assert start < first <= end + 0.001
    assert end <= second + 1
    assert gen["bases"] == 1
    assert gen["commits"] >= 2
    assert gen["hole"] is None
    code, out, _ = _run(home, "db", "timeline")
    assert code == 0
    assert gen["generation"] in out
    assert "GENERATION" in out
    code, _, err = _run(home, "db", "timeline", "--db", "nothing-here")
    assert code == 0
    assert "no archive of 'nothing-here'" in err


@pytest.mark.encrypted_rerun
def test_restore_at_an_instant_puts_that_state_back(
    tmp_path: Path, store_env: dict[str, str], db_key: Any
) -> None:
    home, first, _second = _archived_home(tmp_path, store_env)
    assert _colour(home, store_env) == "green"
    at = dt.datetime.fromtimestamp(first, dt.UTC).isoformat()
    if db_key is not None:
        # The archive of an encrypted home: without its key the typed key error (exit 79),
        # nothing moved; with it, the instant comes back.
        before = (home / "bastion.db").read_bytes()
        result = CliRunner(env={"BASTION_DB_KEY": None}).invoke(
            cli, ["--home", str(home), "db", "restore", "--at", at, "--yes"]
        )
        assert result.exit_code == 79, result.output
        assert "Traceback" not in result.output
        assert (home / "bastion.db").read_bytes() == before
        assert not (home / "quarantine").exists() or not any((home / "quarantine").iterdir())
    data = _json(home, "db", "restore", "--at", at, "--yes")
    assert data["shortfall"] is None
    assert data["checks"]["integrity_ok"]
    assert _colour(home, store_env) == "blue"
    assert Path(data["quarantine_dir"]).is_dir()
    # Relative instants: -0s is now, past every archived commit; the archive says it ends.
    code, out, _ = _run(home, "db", "restore", "--at", "-0s", "--yes")
    assert code == 0, out
    assert "SHORT:" in out
    assert "newest commit" in out
    assert _colour(home, store_env) == "green"


def test_restore_at_refusals_change_nothing(tmp_path: Path) -> None:
    home, _first, _ = _archived_home(tmp_path)
    before = (home / "bastion.db").read_bytes()
    code, out, _ = _run(home, "db", "restore", "--at", "2001-01-01T00:00:00Z", "--yes", "--json")
    assert code == 66
    assert json.loads(out)["code"] == "pitr_unavailable"
    code, _, err = _run(home, "db", "restore", "--at", "last tuesday")
    assert code == 2
    assert "--at" in err
    assert "ISO-8601" in err
    code, _, err = _run(home, "db", "restore")
    assert code == 2
    assert "either BACKUP or --at" in err
    code, _, err = _run(home, "db", "restore", "x.db", "--at", "-1m")
    assert code == 2
    cfg = load_config(home, env={})
    with daemon_handshake_here(cfg.run_dir):  # a daemon's: this process, on its port
        code, _, err = _run(home, "db", "restore", "--at", "-0s", "--yes")
        assert code != 0
        assert "--stop-daemon" in err
    assert (home / "bastion.db").read_bytes() == before
    assert not (home / "quarantine").exists() or not any((home / "quarantine").iterdir())


def test_archiving_is_configurable(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir(mode=0o700)
    (tmp_path / "home" / "bastion.toml").write_text(
        '[archive]\nenabled = false\ndir = "elsewhere"\nretain = "36h"\n'
    )
    cfg = load_config(tmp_path / "home", env={})
    assert cfg.archive.enabled is False
    assert cfg.archive_dir == cfg.home / "elsewhere"
    assert cfg.archive.retain_s == 36 * 3600
    env_cfg = load_config(tmp_path / "home", env={"BASTION_ARCHIVE_RETAIN": "2w"})
    assert env_cfg.archive.retain_s == 14 * 86400
