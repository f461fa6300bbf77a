"""``bastion config show|path``, ``load_config(overrides=...)``, docs/config.md, and shell
completion of service names, secret names and setting keys through a real bash."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bastion.cli import cli
from bastion.config import _SECTIONS, _field_docs, explain_config, load_config
from bastion.errors import ConfigError
from tests.helpers import file_vault_env


def _run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_config_show_names_the_source_of_every_value(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "bastion.toml").write_text(
        '[vault]\nbackend = "encrypted-file"\n[retention]\nlogs_days = 7\n'
    )
    env = {"BASTION_HOME": str(home), "BASTION_RETENTION_LOGS_DAYS": "3"}
    code, out, _ = _run(env, "config", "show", "--json")
    assert code == 0
    data = json.loads(out)
    by_key = {f"{v['section']}.{v['key']}": v for v in data["values"]}
    assert by_key["vault.backend"]["value"] == "encrypted-file"
    assert by_key["vault.backend"]["source"] == "bastion.toml"
    assert by_key["retention.logs_days"]["value"] == 3  # env beats the file
    assert by_key["retention.logs_days"]["source"] == "env BASTION_RETENTION_LOGS_DAYS"
    assert by_key["store.readers"]["source"] == "default"
    assert by_key["store.readers"]["env"] == "BASTION_STORE_READERS"
    every = {(s, f.name) for s, cls in _SECTIONS.items() for f in dataclasses.fields(cls)}
    assert {(v["section"], v["key"]) for v in data["values"]} == every

    code, out, _ = _run(env, "config", "show", "--no-headers")
    rows = [line.split("\t") for line in out.splitlines()]
    assert ["vault.backend", '"encrypted-file"', "bastion.toml", "BASTION_VAULT_BACKEND"] in rows
    code, out, _ = _run(env, "config", "show", "--section", "vault", "--no-headers")
    assert all(line.startswith("vault.") for line in out.splitlines())

    code, out, _ = _run(env, "config", "path")
    assert (code, out) == (0, f"{home / 'bastion.toml'}\n")
    code, out, _ = _run({"BASTION_HOME": str(tmp_path / "nowhere")}, "config", "path", "--json")
    assert json.loads(out) == {
        "path": str(tmp_path / "nowhere" / "bastion.toml"),
        "exists": False,
        "home": str(tmp_path / "nowhere"),
    }


def test_config_show_reports_a_bad_file_as_a_config_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "bastion.toml").write_text("[vault]\nbackend = 'nope'\n")
    code, _, err = _run({"BASTION_HOME": str(home)}, "config", "show")
    assert code == 78
    assert "[vault] backend" in err
    assert "Traceback" not in err


def test_load_config_overrides_choose_the_vault_backend_in_code(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, env={}, overrides={"vault": {"backend": "encrypted-file"}})
    assert cfg.vault.backend == "encrypted-file"
    # code wins over the file and the environment, and is checked like them
    (tmp_path / "bastion.toml").write_text("[vault]\nbackend = 'keychain'\n")
    cfg = load_config(
        tmp_path,
        env={"BASTION_VAULT_BACKEND": "keychain"},
        overrides={"vault": {"backend": "encrypted-file"}},
    )
    assert cfg.vault.backend == "encrypted-file"
    _, entries = explain_config(
        tmp_path, env={}, overrides={"vault": {"backend": "encrypted-file"}}
    )
    assert next(e for e in entries if e.key == "backend").source == "overrides"
    with pytest.raises(ConfigError, match="unknown key 'backnd'"):
        load_config(tmp_path, env={}, overrides={"vault": {"backnd": "encrypted-file"}})
    with pytest.raises(ConfigError, match="not one of the accepted values"):
        load_config(tmp_path, env={}, overrides={"vault": {"backend": "plaintext"}})
    with pytest.raises(ConfigError, match="unknown section 'vualt'"):
        load_config(tmp_path, env={}, overrides={"vualt": {}})


def test_every_config_key_is_documented() -> None:
    reference = (Path(__file__).resolve().parents[2] / "docs" / "config.md").read_text()
    for section, cls in _SECTIONS.items():
        docs = _field_docs(cls)
        assert f"## `[{section}]`" in reference
        for f in dataclasses.fields(cls):
            assert docs.get(f.name), f"[{section}] {f.name} has no #: comment in config.py"
            assert f"| `{f.name}` |" in reference


@pytest.fixture
def completion_home(tmp_path: Path) -> dict[str, str]:

    env = {
        **os.environ,
        "BASTION_HOME": str(tmp_path / "home"),
        **file_vault_env(),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    assert _run(env, "init")[0] == 0
    for name in ("OPENAI_API_KEY", "OPENROUTER_KEY", "GITHUB_TOKEN"):
        assert CliRunner().invoke(cli, ["secrets", "set", name], input="v", env=env).exit_code == 0
    for key in ("ui.theme", "ui.font", "retention.days"):
        assert _run(env, "settings", "set", key, "1")[0] == 0
    for name in ("agent", "asr", "web"):
        (tmp_path / "home" / "services" / f"{name}.toml").write_text('argv = ["/bin/true"]\n')
    return env


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_service_secret_and_setting_names(completion_home: dict[str, str]) -> None:
    script = r"""
eval "$(bastion completion bash)"
complete -p bastion >/dev/null || exit 3
for words in "secrets get OPEN" "secrets delete G" "settings get ui." "services status a" \
             "services run w" "logs --source a" "sec"; do
    COMP_WORDS=(bastion $words); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
    _bastion_completion bastion
    echo "$words=${COMPREPLY[*]}"
done
"""
    done = subprocess.run(
        ["bash", "-c", script],
        check=False,
        env=completion_home,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    got = dict(line.split("=", 1) for line in done.stdout.splitlines())
    assert got == {
        "secrets get OPEN": "OPENAI_API_KEY OPENROUTER_KEY",
        "secrets delete G": "GITHUB_TOKEN",
        "settings get ui.": "ui.font ui.theme",
        "services status a": "agent asr",
        "services run w": "web",
        "logs --source a": "agent asr",
        "sec": "secrets",
    }


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script_for_each_shell(shell: str) -> None:
    code, out, _ = _run({}, "completion", shell)
    assert code == 0
    assert "_BASTION_COMPLETE" in out
    assert f"{shell}_complete" in out
    code, _, err = _run({}, "completion", "powershell")
    assert code == 2
    assert "powershell" in err


def test_completion_of_a_missing_home_completes_nothing(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BASTION_HOME": str(tmp_path / "missing"),
        "_BASTION_COMPLETE": "bash_complete",
        "COMP_WORDS": "bastion secrets get O",
        "COMP_CWORD": "3",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bastion"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert done.stdout.strip() == ""
    assert done.stderr == ""
    assert not (tmp_path / "missing").exists()
