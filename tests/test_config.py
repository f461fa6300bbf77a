"""Config: defaults, bastion.toml, BASTION_* overrides, and errors that name the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bastion.config import ApiConfig, Config, default_home, load_config
from bastion.errors import ConfigError


def test_defaults(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, env={})
    assert cfg.home == tmp_path
    assert cfg.store.synchronous == "NORMAL"
    assert cfg.store.busy_timeout_ms == 5000
    assert cfg.vault.backend == "keychain"
    assert cfg.db_path == tmp_path / "bastion.db"
    assert cfg.vault_db_path == tmp_path / "vault.db"


def test_home_from_env_and_platform_default(tmp_path: Path) -> None:
    assert default_home({"BASTION_HOME": str(tmp_path / "h")}) == tmp_path / "h"
    assert load_config(env={"BASTION_HOME": str(tmp_path)}).home == tmp_path
    assert default_home({}).name == "bastion"


def test_toml_then_env_precedence(tmp_path: Path) -> None:
    (tmp_path / "bastion.toml").write_text(
        '[store]\nsynchronous = "FULL"\nbusy_timeout_ms = 9000\n[api]\nallowed_origins = ["tauri://localhost"]\n'
    )
    cfg = load_config(tmp_path, env={"BASTION_STORE_BUSY_TIMEOUT_MS": "12000"})
    assert cfg.store.synchronous == "FULL"
    assert cfg.store.busy_timeout_ms == 12000
    assert cfg.api.allowed_origins == ("tauri://localhost",)
    cfg = load_config(
        tmp_path,
        env={"BASTION_API_ALLOWED_ORIGINS": "a://x, b://y", "BASTION_VAULT_CHUNKING": "off"},
    )
    assert cfg.api.allowed_origins == ("a://x", "b://y")
    assert cfg.vault.chunking is False


@pytest.mark.parametrize(
    ("env", "needle", "hint"),
    [
        ({"BASTION_STORE_BUSY_TIMEOUT_MS": "100"}, "BASTION_STORE_BUSY_TIMEOUT_MS", "between 2000"),
        ({"BASTION_STORE_BUSY_TIMEOUT_MS": "soon"}, "is not a whole number", "whole number"),
        ({"BASTION_STORE_SYNCHRONOUS": "OFF"}, "BASTION_STORE_SYNCHRONOUS", "'NORMAL', 'FULL'"),
        ({"BASTION_VAULT_CHUNKING": "maybe"}, "not a boolean", "true or false"),
        ({"BASTION_STORE_NO_SUCH_KEY": "1"}, "unknown key 'no_such_key'", "busy_timeout_ms"),
    ],
)
def test_bad_env_values_name_key_problem_and_form(
    tmp_path: Path, env: dict[str, str], needle: str, hint: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env=env)
    assert needle in info.value.message
    assert hint in info.value.hint


def test_bad_toml(tmp_path: Path) -> None:
    (tmp_path / "bastion.toml").write_text("[store\nx=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path, env={})
    (tmp_path / "bastion.toml").write_text("[stroe]\nx = 1\n")
    with pytest.raises(ConfigError, match=r"unknown section \[stroe\]") as info:
        load_config(tmp_path, env={})
    assert "store" in info.value.hint
    (tmp_path / "bastion.toml").write_text("[store]\nbusy_timeout_ms = true\n")
    with pytest.raises(ConfigError, match="busy_timeout_ms"):
        load_config(tmp_path, env={})


def test_load_config_past_file_reads_past_bastion_toml_and_only_it(tmp_path: Path) -> None:
    from bastion.config import load_config_past_file

    home = tmp_path / "home"
    home.mkdir()
    (home / "bastion.toml").write_text("[api]\nport = 8123\n")
    assert load_config_past_file(home, env={}) == (load_config(home, env={}), None)
    (home / "bastion.toml").write_text("[api\nport = 8123\n")
    cfg, problem = load_config_past_file(home, env={"BASTION_API_PORT": "8124"})
    # The defaults, then the environment, which still applies.
    assert cfg == Config(home=home, api=dataclasses.replace(ApiConfig(), port=8124))
    assert problem is not None
    assert problem.message.startswith(f"{home / 'bastion.toml'} is not valid TOML")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config_past_file(home, env={"BASTION_API_PORT": "any"})  # the file's, first
    (home / "bastion.toml").write_text("[api]\nport = 8123\n")
    with pytest.raises(ConfigError, match="BASTION_API_PORT"):
        load_config_past_file(home, env={"BASTION_API_PORT": "any"})


OPENAI_KEY = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"  # split: no scanner takes it for real


@pytest.mark.parametrize(
    ("text", "env"),
    [
        (f'[api]\nport = "{OPENAI_KEY}"\n', {}),  # a key pasted into the wrong setting
        (f'[api]\ntoken_store = "{OPENAI_KEY}"\n', {}),
        (f'[supervisor]\nautostart = "{OPENAI_KEY}"\n', {}),
        ("", {"BASTION_API_PORT": OPENAI_KEY}),
    ],
)
def test_a_refused_value_that_looks_like_a_credential_is_not_repeated(
    tmp_path: Path, text: str, env: dict[str, str]
) -> None:
    # A config error is printed, logged by the daemon and recorded in its events: it
    # repeated the refused value, whatever it was.
    (tmp_path / "bastion.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, env=env)
    said = f"{caught.value.message} {caught.value.hint} {caught.value.details}"
    assert OPENAI_KEY not in said
    assert "sk-proj" not in said
    assert "a value that looks like a credential (not repeated here)" in caught.value.message


def test_a_long_refused_value_is_cut(tmp_path: Path) -> None:
    (tmp_path / "bastion.toml").write_text(f'[api]\nport = "{"9 " * 500}"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, env={})
    assert f"[api] port: '{'9 ' * 38}... is not a whole number" in caught.value.message
    assert len(caught.value.message) < 200 + len(str(tmp_path))
