"""``bastion config history|diff|rollback`` without a daemon: edits found and recorded as the
file's, a rollback written back atomically and recorded as the CLI's, refusals that change
nothing, output through the shared helpers (JSON times in RFC 3339) and exit codes."""

from __future__ import annotations

import json
import re
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bastion.cli import cli

SLEEP = shutil.which("sleep") or "/bin/sleep"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def _run(home: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _history(home: Path, *args: str) -> list[dict[str, Any]]:
    code, out, err = _run(home, "config", "history", "--json", *args)
    assert code == 0, err
    items: list[dict[str, Any]] = json.loads(out)
    return items


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    assert _run(home, "init")[0] == 0
    return home


def test_edits_are_recorded_and_a_rollback_writes_the_old_text_back(tmp_path: Path) -> None:
    home = _home(tmp_path)
    spec = home / "services" / "speech.toml"
    first = f'argv = ["{SLEEP}", "1000"]\nsecrets = {{ TOKEN = "secret:global/token" }}\n'
    spec.write_text(first)
    (home / "bastion.toml").write_text("[api]\nport = 0\n")
    created = _history(home)
    assert [(v["target"], v["action"], v["author"]) for v in created] == [
        ("services/speech.toml", "created", "file"),
        ("bastion.toml", "created", "file"),
    ]
    assert all(RFC3339.match(v["ts"]) for v in created)
    assert _history(home) == created  # nothing changed: nothing recorded

    spec.write_text(first.replace("1000", "2000") + "# longer\n")
    changed = _history(home, "--service", "speech")
    assert [v["action"] for v in changed] == ["changed", "created"]
    new_id, old_id = changed[0]["id"], changed[1]["id"]

    code, out, _ = _run(home, "config", "diff", str(old_id), str(new_id))
    assert code == 0
    assert f"--- services/speech.toml@{old_id}" in out
    assert f'-argv = ["{SLEEP}", "1000"]' in out
    assert f'+argv = ["{SLEEP}", "2000"]' in out
    assert "+# longer" in out

    code, out, err = _run(home, "config", "rollback", str(old_id), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["applied"] == "next start"
    assert result["restored"]["id"] == old_id
    assert spec.read_text() == first
    assert stat.S_IMODE(spec.stat().st_mode) == 0o600  # written by _fs.atomic_write
    latest = _history(home, "--service", "speech")[0]
    assert (latest["action"], latest["author"], latest["rollback_of"]) == (
        "rollback",
        "cli",
        old_id,
    )
    assert latest["hash"] == changed[1]["hash"]
    assert latest["id"] == result["recorded"]["id"]

    # Human output: the shared table (tab-separated when piped), newest first.
    code, out, _ = _run(home, "config", "history")
    lines = out.splitlines()
    assert lines[0].split("\t") == ["ID", "TIME", "FILE", "ACTION", "BY", "SHA256", "NOTE"]
    assert lines[1].split("\t")[3:5] == ["rollback", "cli"]


def test_a_removed_spec_is_a_version_and_rolling_back_restores_it(tmp_path: Path) -> None:
    home = _home(tmp_path)
    spec = home / "services" / "worker.toml"
    text = f'argv = ["{SLEEP}", "5"]\n'
    spec.write_text(text)
    created = _history(home)[0]["id"]
    spec.unlink()
    assert _history(home)[0]["action"] == "deleted"
    assert _run(home, "config", "rollback", str(created))[0] == 0
    assert spec.read_text() == text


def test_refusals_name_the_problem_and_write_nothing(tmp_path: Path) -> None:
    home = _home(tmp_path)
    spec = home / "services" / "tool.toml"
    program = tmp_path / "tool.sh"
    program.write_text("#!/bin/sh\nexec sleep 100\n")
    program.chmod(0o755)
    spec.write_text(f'argv = ["{program}"]\n')
    gone_id = _history(home)[0]["id"]
    spec.write_text(f'argv = ["{SLEEP}", "1"]\n')
    key = "ghp_" + "x" * 36
    spec.write_text(f'argv = ["{SLEEP}", "2"]\n# deploy key {key}\n')
    versions = _history(home, "--service", "tool")
    withheld = versions[0]
    assert withheld["withheld"] is not None
    assert "GitHub" in withheld["withheld"]
    assert key not in json.dumps(versions)
    now = spec.read_text()

    code, _out, err = _run(home, "config", "rollback", str(withheld["id"]))
    assert code == 65
    assert "was not kept" in err
    assert spec.read_text() == now
    # A diff cannot show it either, and says why (it said a rollback was refused).
    code, out, _ = _run(home, "config", "diff", str(gone_id), str(withheld["id"]), "--json")
    assert code == 65
    assert json.loads(out)["code"] == "config_version_withheld"

    program.unlink()  # the version's program is gone: the old text would not run
    code, _out, err = _run(home, "config", "rollback", str(gone_id))
    assert code == 65
    assert "is not valid any more" in err
    assert str(program) in err
    assert spec.read_text() == now

    code, _out, err = _run(home, "config", "rollback", "9999")
    assert code == 66
    assert "no configuration version 9999" in err
    code, out, _ = _run(home, "config", "diff", str(gone_id), "9999", "--json")
    assert code == 66
    assert json.loads(out)["code"] == "config_version_not_found"
    assert len(_history(home, "--service", "tool")) == len(versions)  # nothing recorded


def test_a_write_that_fails_records_nothing(tmp_path: Path) -> None:
    home = _home(tmp_path)
    spec = home / "services" / "x.toml"
    spec.write_text(f'argv = ["{SLEEP}", "1"]\n')
    first = _history(home)[0]["id"]
    spec.write_text(f'argv = ["{SLEEP}", "2"]\n')
    before = _history(home)
    # The file's place is taken by a directory: the atomic rename onto it fails.
    spec.unlink()
    spec.mkdir()
    code, _out, err = _run(home, "config", "rollback", str(first))
    assert code == 65
    assert "cannot write" in err
    assert _history(home) == before  # the version was rolled back with the transaction


def test_a_recorded_bastion_toml_that_no_longer_parses_is_refused_naming_the_home_file(
    tmp_path: Path,
) -> None:
    # Versions recorded by an older bastion (a key it knew, a syntax it let through): the
    # refusal says what is wrong with the text, never the temporary copy it was checked in.
    from bastion.app import Home
    from bastion.config import load_config
    from bastion.domains.confighistory import CONFIG_TARGET, ConfigHistoryRepo

    home = _home(tmp_path)
    config_file = home / "bastion.toml"
    config_file.write_text("[api]\nport = 0\n")
    with Home.open(load_config(home, env={}), create=False) as h:
        repo = ConfigHistoryRepo(h.db)
        wrong_type = repo.record(CONFIG_TARGET, "[api]\nport = 'any'\n", "file")
        not_toml = repo.record(CONFIG_TARGET, "[api\nport = 1\n", "file")
        repo.record(CONFIG_TARGET, "[api]\nport = 0\n", "file")
    assert wrong_type is not None
    assert not_toml is not None
    before = _history(home)
    for version, problem in (
        (wrong_type, "bastion.toml [api] port: 'any' is not a whole number"),
        (not_toml, "bastion.toml is not valid TOML: Expected ']'"),
    ):
        code, _out, err = _run(home, "config", "rollback", str(version.id))
        assert code == 65, err
        assert f"version {version.id} of bastion.toml is not valid any more: {problem}" in err
        assert "bastion-config-check-" not in err
        assert config_file.read_text() == "[api]\nport = 0\n"
    assert _history(home) == before


@pytest.mark.parametrize(
    "broken", ["[api\nport = 1\n", "[api]\nport = 'any'\n", "[apii]\nport = 0\n"]
)
def test_a_bastion_toml_that_does_not_load_is_rolled_back_past_its_error(
    tmp_path: Path, broken: str
) -> None:
    # The commands that undo a bad edit were stopped by it: `config history` and `config
    # rollback` failed with the file's error, so the recorded version could be neither
    # found nor written back. They read past it now (said on stderr); other commands still
    # refuse the file.
    home = _home(tmp_path)
    config_file = home / "bastion.toml"
    config_file.write_text("[api]\nport = 0\n")
    good = _history(home)[0]
    config_file.write_text(broken)
    assert _run(home, "config", "show")[0] != 0
    code, out, err = _run(home, "config", "history", "--json")
    assert code == 0, err
    assert f"warning: {config_file}" in err
    assert json.loads(out) == [good]  # the file as it is cannot run: not a version
    code, out, err = _run(home, "config", "diff", str(good["id"]), str(good["id"]))
    assert code == 0, err
    code, out, err = _run(home, "config", "rollback", str(good["id"]), "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["applied"] == "next start"
    assert config_file.read_text() == "[api]\nport = 0\n"
    # Not a version, so not in the history: the replaced text is kept next to the file.
    (kept,) = home.glob("bastion.toml.invalid-*")
    assert answer["kept"] == str(kept)
    assert kept.read_text() == broken
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    code, out, err = _run(home, "config", "show")
    assert code == 0, err
    assert "warning" not in err
    assert [v["action"] for v in _history(home)] == ["rollback", "created"]


def test_a_spec_that_does_not_load_is_kept_aside_by_the_rollback_that_replaces_it(
    tmp_path: Path,
) -> None:
    # A spec edit with a mistake in it is not a version; the rollback that undoes it keeps
    # it under a name no reader of services/ takes for a spec, and a valid file replaced by
    # a rollback is a version already: nothing kept.
    home = _home(tmp_path)
    spec = home / "services" / "w.toml"
    spec.write_text(f'argv = ["{SLEEP}", "1"]\n')
    first = _history(home)[0]
    spec.write_text(f'argv = ["{SLEEP}", "2"]\n')
    code, out, err = _run(home, "config", "rollback", str(first["id"]), "--json")
    assert code == 0, err
    assert json.loads(out)["kept"] is None
    spec.write_text('argv = "not a list"\n')
    code, out, err = _run(home, "config", "rollback", str(first["id"]))
    assert code == 0, err
    (kept,) = (home / "services").glob("w.toml.invalid-*")
    assert f"replaced text: {kept} (it did not load: not a version)" in out
    assert kept.read_text() == 'argv = "not a list"\n'
    code, out, err = _run(home, "services", "validate")
    assert code == 0, out + err
    assert [v["action"] for v in _history(home)] == ["rollback", "rollback", "changed", "created"]


def test_an_error_that_is_not_the_files_still_stops_the_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only bastion.toml is read past: a bad BASTION_* variable is the command's error as ever
    # (reading the home as if it were not set would hide it).
    home = _home(tmp_path)
    (home / "bastion.toml").write_text("[api\n")
    monkeypatch.setenv("BASTION_API_PORT", "any")
    code, out, err = _run(home, "config", "history")
    assert code != 0
    assert "error: " in err
    assert out == ""


def test_a_rollback_records_the_edit_it_replaces_first(tmp_path: Path) -> None:
    # A daemon records edits as its watch sees them; with the watch off (or before it
    # settled) nothing had recorded the edit a rollback then replaced: it was lost. The
    # rollback itself (here called as the library, as the CLI does when a daemon runs)
    # records what the file says before it writes, in the same transaction.
    from bastion import config_history
    from bastion.app import Home
    from bastion.config import load_config

    home = _home(tmp_path)
    spec = home / "services" / "w.toml"
    spec.write_text(f'argv = ["{SLEEP}", "1"]\n')
    first = _history(home)[0]
    edit = f'argv = ["{SLEEP}", "2"]\n# a careful edit\n'
    spec.write_text(edit)  # not recorded: no sync, no daemon
    with Home.open(load_config(home, env={}), create=False) as h:
        result = config_history.rollback(h, first["id"])
        kept = config_history.history(h, limit=10).items
        edited = h.db.lookup("SELECT content FROM config_versions WHERE id = ?", (kept[1].id,))
    assert spec.read_text() == f'argv = ["{SLEEP}", "1"]\n'
    assert [(v.action, v.author) for v in kept] == [
        ("rollback", "cli"),
        ("changed", "file"),
        ("created", "file"),
    ]
    assert result.recorded is not None
    assert result.recorded.id == kept[0].id
    assert edited == (edit,)
