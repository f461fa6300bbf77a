"""``bastion db encrypt|decrypt|rekey`` and the key errors at the CLI (issue 19 section 1).

A plaintext home is switched to ``store.encryption = "required"``: every command refuses it
(``db_not_encrypted``, exit 79) until ``db encrypt`` converts bastion.db and vault.db; then
the files hold no plaintext, a wrong key is ``db_key_wrong`` (exit 79, nothing quarantined),
``db rekey`` moves to a new key and ``db decrypt`` back to plaintext. The keychain source runs
against a real Secret Service (marker ``keychain``).
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bastion.app import Home
from bastion.cli import cli
from bastion.config import load_config
from tests.store.opsfixtures import ITEMS_DDL, add_items, assert_no_plaintext
from tests.vault.conftest import secret_service_reason

SENTINEL = "crypt-sentinel-5e1d"


def _run(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--home", str(home), *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def _json(home: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    code, out, err = _run(home, *args, "--json", env=env)
    assert code == 0, (out, err)
    return json.loads(out)


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _plain_home(tmp_path: Path) -> Path:
    env = {"BASTION_VAULT_BACKEND": "encrypted-file"}
    cfg = load_config(tmp_path / "home", env=env)
    (cfg.home).mkdir(parents=True)
    (cfg.home / "bastion.toml").write_text('[vault]\nbackend = "encrypted-file"\n')
    with Home.init(cfg) as home:
        home.db.write(lambda tx: tx.script(ITEMS_DDL))
        add_items(home.db, 0, 300)
        home.settings.set("greeting", SENTINEL)
        home.vault.set("API_TOKEN", "token-value-for-the-test-123", scope="global")
        home.backup()
    return cfg.home


@pytest.fixture
def env_source(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """BASTION_* for a home encrypted with BASTION_DB_KEY (and its vault's own key)."""
    values = {
        "BASTION_STORE_ENCRYPTION": "required",
        "BASTION_STORE_KEY_SOURCE": "env",
        "BASTION_DB_KEY": _key(),
        "BASTION_VAULT_KEY": _key(),
    }
    monkeypatch.setenv("BASTION_VAULT_KEY", values["BASTION_VAULT_KEY"])
    return values


def test_encrypt_rekey_decrypt_a_home(tmp_path: Path, env_source: dict[str, str]) -> None:
    off = {k: v for k, v in env_source.items() if k != "BASTION_STORE_ENCRYPTION"}
    home = _plain_home(tmp_path)
    # Required but not converted yet: refused with its own code and exit status.
    code, out, _ = _run(home, "db", "status", "--json", env=env_source)
    assert code == 79
    assert json.loads(out)["code"] == "db_not_encrypted"
    code, out, _ = _run(home, "db", "encrypt", "--yes", "--json", env=off)
    assert code == 78, "encrypt needs store.encryption = required first"
    assert "store.encryption" in json.loads(out)["message"]

    done = _json(home, "db", "encrypt", "--yes", env=env_source)
    assert sorted(r["db"] for r in done["converted"]) == ["bastion", "vault"]
    assert all(r["after"].startswith("encrypted (key id") for r in done["converted"])
    assert done["plaintext_backups"], "the backups made before are named as plaintext"
    for name in ("bastion.db", "vault.db"):
        assert_no_plaintext(home / name, SENTINEL.encode(), b"API_TOKEN")
    status = _json(home, "db", "status", env=env_source)
    assert status["encryption"]["cipher"] == "aegis-256"
    vault_status = _json(home, "db", "status", "--db", "vault", env=env_source)
    assert vault_status["encryption"]["key_id"] == status["encryption"]["key_id"]
    code, out, _ = _run(home, "db", "status", env=env_source)
    assert f"aegis-256 (key id {status['encryption']['key_id']})" in out
    made = _json(home, "db", "backup", env=env_source)
    assert_no_plaintext(Path(made["path"]), SENTINEL.encode())
    assert _json(home, "db", "check", env=env_source)["ok"]
    # The one-shot read (`settings get`, no Database) is keyed too.
    code, out, err = _run(home, "settings", "get", "greeting", env=env_source)
    assert code == 0, err
    assert SENTINEL in out
    again = _json(home, "db", "encrypt", "--yes", env=env_source)
    assert again["converted"] == []

    # The wrong key: its own error, exit 79, and nothing quarantined by recover.
    wrong = {**env_source, "BASTION_DB_KEY": _key()}
    for args in (
        ("db", "status"),
        ("db", "check"),
        ("db", "recover"),
        ("settings", "list"),
        ("settings", "get", "greeting"),
    ):
        code, out, _ = _run(home, *args, "--json", env=wrong)
        assert code == 79, (args, out)
        assert json.loads(out)["code"] == "db_key_wrong"
    assert not any((home / "quarantine").iterdir())

    new_key = _key()
    rekeyed = _json(home, "db", "rekey", "--yes", env={**env_source, "BASTION_DB_NEW_KEY": new_key})
    assert len(rekeyed["converted"]) == 2
    code, out, _ = _run(home, "db", "status", "--json", env=env_source)
    assert code == 79, "the old key no longer opens it"
    after = {**env_source, "BASTION_DB_KEY": new_key}
    assert (
        _json(home, "db", "status", env=after)["encryption"]["key_id"]
        != status["encryption"]["key_id"]
    )
    # A backup made before the rekey names the key it needs.
    code, out, _ = _run(
        home, "db", "restore", Path(made["path"]).name, "--yes", "--json", env=after
    )
    assert code == 79
    error = json.loads(out)
    assert error["code"] == "db_key_wrong"
    assert status["encryption"]["key_id"] in error["message"]

    plain_again = {**after, "BASTION_STORE_ENCRYPTION": "off"}
    undone = _json(home, "db", "decrypt", "--yes", env=plain_again)
    assert all(r["after"] == "plaintext" for r in undone["converted"])
    with Home.open(load_config(home, env={"BASTION_VAULT_BACKEND": "encrypted-file"})) as h:
        assert h.settings.get("greeting") == SENTINEL
        assert h.db.scalar("SELECT count(*) FROM items") == 300
    assert (home / "bastion.db").read_bytes().startswith(b"SQLite format 3")


def test_a_missing_key_says_which_variable(tmp_path: Path, env_source: dict[str, str]) -> None:
    home = _plain_home(tmp_path)
    _json(home, "db", "encrypt", "--yes", env=env_source)
    before = (home / "bastion.db").read_bytes()
    no_key = {k: v for k, v in env_source.items() if k != "BASTION_DB_KEY"}
    code, out, _ = _run(home, "db", "recover", "--force", "--json", env=no_key)
    assert code == 79
    error = json.loads(out)
    assert error["code"] == "db_key_missing"
    assert "BASTION_DB_KEY" in error["message"] + error["hint"]
    assert (home / "bastion.db").read_bytes() == before
    assert not any((home / "quarantine").iterdir())


@pytest.mark.keychain
def test_keychain_key_made_on_first_use_and_kept_through_a_rekey(tmp_path: Path) -> None:
    reason = secret_service_reason()
    if reason:
        pytest.skip(reason)
    service = f"bastion-test-{uuid.uuid4().hex[:12]}"
    env = {
        "BASTION_STORE_ENCRYPTION": "required",
        "BASTION_STORE_KEY_SOURCE": "keychain",
        "BASTION_VAULT_SERVICE": service,
        "BASTION_VAULT_BACKEND": "keychain",
    }
    cfg = load_config(tmp_path / "home", env=env)
    try:
        with Home.init(cfg) as home:  # a new home: the key is made in the keychain
            home.settings.set("greeting", SENTINEL)
            first = home.db.key_id
            backup = home.backup()
        assert_no_plaintext(cfg.db_path, SENTINEL.encode())
        home_dir = str(cfg.home)
        rekeyed = _json(Path(home_dir), "db", "rekey", "--yes", env=env)
        assert [r["db"] for r in rekeyed["converted"]] == ["bastion"]
        with Home.open(cfg) as home:
            assert home.db.key_id != first
            assert home.settings.get("greeting") == SENTINEL
        # The backup of the old key restores: the keychain kept that key.
        restored = _json(Path(home_dir), "db", "restore", Path(backup.path).name, "--yes", env=env)
        assert restored["checks"]["integrity_ok"]
        # A rekey cut short after the new key was kept (before the swap) still opens.
        from bastion.vault.dbkey import DatabaseKeySource

        source = DatabaseKeySource(cfg)
        source.push_keychain_key(source.new_key_like())
        with Home.open(cfg) as home:
            assert home.settings.get("greeting") == SENTINEL
    finally:
        from bastion.vault.keychain import KeychainClient

        client = KeychainClient(cfg.vault)
        for user in client.usernames() or ():
            client.delete(user)
