"""The vault's edges (issue #15 §4) on the encrypted file: batch reads, scope deletion,
orphan scopes, reconcile's drop-all override, adoption where the keychain cannot list, and
keyring's error classes. The keychain side of the same features is in test_bulk_keychain.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from keyring.errors import KeyringError, KeyringLocked

from bastion.cli import cli
from bastion.config import Config
from bastion.errors import (
    DecryptionFailed,
    ReconcileRefused,
    SecretNotFound,
    VaultError,
    VaultLocked,
)
from bastion.vault import Vault

from .conftest import FAST_KDF, make_home, new_env_key


def _audit_ops(vault: Vault, scope: str) -> list[tuple[str, str]]:
    vault.audit.flush()
    return [(e.operation, e.name or "") for e in vault.audit_entries(scope=scope, limit=1000)]


# --- get_many ----------------------------------------------------------------------------------


def test_get_many_reads_a_scope_or_names_in_one_pass(file_vault: Vault) -> None:
    for i in range(5):
        file_vault.set(f"K{i}", f"value-{i}", scope="bot:1")
    file_vault.set("OTHER", "other", scope="bot:2")
    every = file_vault.get_many(scope="bot:1")
    assert {k: v.reveal() for k, v in every.items()} == {f"K{i}": f"value-{i}" for i in range(5)}
    some = file_vault.get_many(["K3", "K1"], scope="bot:1")
    assert list(some) == ["K3", "K1"]  # in the order asked
    assert some["K3"].reveal() == "value-3"
    assert "value-3" not in repr(some)  # masked, like get's
    assert file_vault.get_many(scope="bot:empty") == {}
    # Each value read is audited as a get would be.
    ops = _audit_ops(file_vault, "bot:1")
    assert sum(1 for op, _ in ops if op == "get") == 7


def test_get_many_names_every_missing_secret(file_vault: Vault) -> None:
    file_vault.set("HERE", "v", scope="bot:1")
    with pytest.raises(SecretNotFound, match=r"no secret bot:1/GONE \(and 1 more: ALSO\)"):
        file_vault.get_many(["HERE", "GONE", "ALSO"], scope="bot:1")


def test_get_many_refuses_a_moved_ciphertext(file_vault: Vault) -> None:
    file_vault.set("A", "value-a", scope="bot:1")
    file_vault.set("B", "value-b", scope="bot:1")
    # B's ciphertext under A's row: authenticated encryption binds scope/name/version.
    file_vault.db.write(
        lambda tx: tx.execute(
            "UPDATE vault_values SET ciphertext = (SELECT ciphertext FROM vault_values "
            "WHERE name = 'B'), nonce = (SELECT nonce FROM vault_values WHERE name = 'B') "
            "WHERE name = 'A'"
        )
    )
    with pytest.raises(DecryptionFailed, match="bot:1/A"):
        file_vault.get_many(scope="bot:1")


# --- delete_scope ------------------------------------------------------------------------------


def test_delete_scope_removes_a_scope_in_one_transaction(file_vault: Vault) -> None:
    for i in range(3):
        file_vault.set(f"K{i}", "v", scope="bot:1")
    file_vault.set("K0", "kept", scope="bot:2")
    file_vault.set("K0", "kept", scope="global")
    result = file_vault.delete_scope("bot:1", actor="test")
    assert [m.name for m in result.deleted] == ["K0", "K1", "K2"]
    assert result.pending == 0
    assert result.to_dict() == {
        "scope": "bot:1",
        "deleted": ["K0", "K1", "K2"],
        "count": 3,
        "pending": 0,
    }
    assert {(m.scope, m.name) for m in file_vault.list()} == {("bot:2", "K0"), ("global", "K0")}
    assert file_vault.db.query("SELECT name FROM vault_values WHERE scope = 'bot:1'") == []
    assert file_vault.db.scalar("SELECT count(*) FROM vault_pending_deletes") == 0
    assert [op for op, _ in _audit_ops(file_vault, "bot:1")].count("delete") == 3
    assert file_vault.get("K0", "bot:2").reveal() == "kept"
    assert file_vault.delete_scope("bot:1").deleted == ()  # nothing left: not an error


def test_a_failed_scope_delete_leaves_the_whole_scope(file_vault: Vault) -> None:
    for i in range(3):
        file_vault.set(f"K{i}", "v", scope="bot:1")
    # A trigger makes the transaction fail after the index rows went: all of it rolls back.
    file_vault.db.write(
        lambda tx: tx.execute(
            "CREATE TEMP TRIGGER fail_journal BEFORE DELETE ON vault_values "
            "BEGIN SELECT RAISE(ABORT, 'injected'); END"
        )
    )
    with pytest.raises(Exception, match="injected"):
        file_vault.delete_scope("bot:1")
    assert [m.name for m in file_vault.list("bot:1")] == ["K0", "K1", "K2"]
    assert file_vault.get_many(scope="bot:1")["K2"].reveal() == "v"


def test_orphan_scopes_from_a_callback_or_a_list(file_vault: Vault) -> None:
    for scope in ("bot:1", "bot:2", "bot:3", "space:x", "global"):
        file_vault.set("K", "v", scope=scope)
    file_vault.set("J", "v", scope="bot:3")
    assert file_vault.scopes() == {"bot:1": 1, "bot:2": 1, "bot:3": 2, "global": 1, "space:x": 1}
    assert file_vault.orphan_scopes({"bot:2"}, prefix="bot:") == {"bot:1": 1, "bot:3": 2}
    live_bots = {"1", "3"}
    assert file_vault.orphan_scopes(
        lambda scope: scope.removeprefix("bot:") in live_bots, prefix="bot:"
    ) == {"bot:2": 1}


# --- reconcile: the drop-all override in the library and the API -------------------------------


def _vanish_values(vault: Vault) -> None:
    vault.db.write(lambda tx: tx.execute("DELETE FROM vault_values"))


def test_reconcile_drop_all_refusal_and_override(file_vault: Vault) -> None:
    file_vault.set("ONE", "v1")
    file_vault.set("TWO", "v2")
    _vanish_values(file_vault)
    with pytest.raises(ReconcileRefused, match="would drop all 2 index rows") as refused:
        file_vault.reconcile(fix=True)
    assert isinstance(refused.value, VaultError)
    assert "--allow-drop-all" in refused.value.hint
    assert "allow_drop_all" in refused.value.hint.replace("--allow-drop-all", "")
    assert len(file_vault.list()) == 2
    report = file_vault.reconcile(fix=True, allow_drop_all=True)
    assert sorted(c["name"] for c in report["changes"]) == ["ONE", "TWO"]
    assert file_vault.list() == []


# --- the CLI: delete --scope --all, orphans, reconcile's refusal -------------------------------


def _cli(cfg: Config, key: str, *args: str) -> tuple[int, str, str]:
    env = {"BASTION_VAULT_KEY": key, "BASTION_VAULT_BACKEND": "encrypted-file", **FAST_KDF}
    result = CliRunner(env=env).invoke(cli, ["--home", str(cfg.home), "secrets", *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_deletes_a_scope_only_when_named(file_cfg: Config, env_key: str) -> None:
    with Vault.open(file_cfg, env={"BASTION_VAULT_KEY": env_key}) as vault:
        vault.set("A", "v", scope="bot:1")
        vault.set("B", "v", scope="bot:1")
        vault.set("A", "v", scope="global")
    code, _, err = _cli(file_cfg, env_key, "delete", "--all")
    assert code == 2
    assert "--all needs --scope" in err
    code, _, err = _cli(file_cfg, env_key, "delete", "A", "--scope", "bot:1", "--all")
    assert code == 2
    code, out, err = _cli(file_cfg, env_key, "delete", "--scope", "bot:1", "--all", "--json")
    assert code == 0, err
    assert json.loads(out) == {"scope": "bot:1", "deleted": ["A", "B"], "count": 2, "pending": 0}
    code, out, _ = _cli(file_cfg, env_key, "list", "--json")
    assert [(r["scope"], r["name"]) for r in json.loads(out)] == [("global", "A")]


def test_cli_orphans_lists_scopes_the_app_reports_gone(
    file_cfg: Config, env_key: str, tmp_path: Path
) -> None:
    with Vault.open(file_cfg, env={"BASTION_VAULT_KEY": env_key}) as vault:
        for scope in ("bot:1", "bot:2", "global"):
            vault.set("K", "v", scope=scope)
    code, _, err = _cli(file_cfg, env_key, "orphans")
    assert code == 2
    assert "--alive" in err
    live = tmp_path / "live.txt"
    live.write_text("bot:1\n")
    code, out, err = _cli(file_cfg, env_key, "orphans", "--alive-from", str(live), "--json")
    assert code == 0, err
    assert json.loads(out) == [{"scope": "bot:2", "secrets": 1}]  # global has no owner
    code, out, _ = _cli(file_cfg, env_key, "orphans", "--prefix", "bot:", "--alive", "bot:2")
    assert out.splitlines()[-1].split("\t") == ["bot:1", "1"]


def test_cli_reconcile_refusal_names_the_override(file_cfg: Config, env_key: str) -> None:
    with Vault.open(file_cfg, env={"BASTION_VAULT_KEY": env_key}) as vault:
        vault.set("ONE", "v1")
        vault.set("TWO", "v2")
        _vanish_values(vault)
    code, out, err = _cli(file_cfg, env_key, "reconcile", "--fix", "--json")
    assert code == 65
    assert json.loads(out)["code"] == "reconcile_refused"
    code, out, err = _cli(file_cfg, env_key, "reconcile", "--fix", "--allow-drop-all", "--json")
    assert code == 0, err
    assert len(json.loads(out)["changes"]) == 2


# --- adopt where the keychain cannot list ------------------------------------------------------


def test_adopt_is_a_documented_no_op_where_the_keychain_cannot_list(tmp_path: Path) -> None:
    from keyrings.cryptfile.cryptfile import CryptFileKeyring

    other = CryptFileKeyring()  # a real keyring backend that has no search by service
    other.file_path = str(tmp_path / "other.cfg")  # type: ignore[attr-defined]
    other.keyring_key = "a passphrase"
    other.set_password("com.aios.secrets", "openai_api_key", "sk-adopt-me")
    cfg = make_home(tmp_path / "home", BASTION_VAULT_BACKEND="encrypted-file")
    with Vault.open(cfg, env={"BASTION_VAULT_KEY": new_env_key()}, keyring_backend=other) as vault:
        report = vault.adopt("com.aios.secrets", "global")
        assert report.supported is False
        assert "cannot list the items of a service" in report.message
        assert "bastion secrets set NAME" in report.message
        assert vault.list() == []
        with pytest.raises(ValueError, match="bastion's own"):
            vault.adopt(cfg.vault.service)


# --- keyring's error convention ----------------------------------------------------------------


def test_a_wrong_vault_key_is_both_vault_locked_and_keyring_locked(tmp_path: Path) -> None:
    from bastion.vault.keyring_backend import EncryptedFileKeyring

    cfg = make_home(tmp_path / "home", BASTION_VAULT_BACKEND="encrypted-file")
    with Vault.open(cfg, env={"BASTION_VAULT_KEY": new_env_key()}) as vault:
        EncryptedFileKeyring.for_vault(vault).set_password("svc", "user", "pw")
    wrong = Vault.open(cfg, env={"BASTION_VAULT_KEY": new_env_key()})
    keyring = EncryptedFileKeyring.for_vault(wrong)
    try:
        for call in (
            lambda: keyring.get_password("svc", "user"),
            lambda: keyring.set_password("svc", "user", "pw"),
            lambda: keyring.delete_password("svc", "user"),
        ):
            with pytest.raises(KeyringError) as caught:  # what keyring users write
                call()
            assert isinstance(caught.value, KeyringLocked)
            assert isinstance(caught.value, VaultLocked)  # and still bastion's
            assert caught.value.code == "vault_locked"
            assert caught.value.hint
    finally:
        wrong.close()


def test_other_vault_failures_are_keyring_errors_too(tmp_path: Path) -> None:
    from bastion.vault.keyring_backend import EncryptedFileKeyring, KeyringVaultError

    cfg = make_home(tmp_path / "home", BASTION_VAULT_BACKEND="encrypted-file")
    vault = Vault.open(cfg, env={"BASTION_VAULT_KEY": new_env_key()})
    keyring = EncryptedFileKeyring.for_vault(vault)
    try:
        keyring.set_password("svc", "user", "pw")
        vault.db.write(lambda tx: tx.execute("UPDATE vault_values SET nonce = zeroblob(12)"))
        with pytest.raises(KeyringError) as caught:
            keyring.get_password("svc", "user")
        assert isinstance(caught.value, KeyringVaultError)
        assert isinstance(caught.value.__cause__, DecryptionFailed)
        assert keyring.get_password("svc", "nobody") is None  # absent is still None
    finally:
        vault.close()


def test_the_combined_classes_stay_out_of_the_error_reference() -> None:
    import bastion.vault.keyring_backend  # noqa: F401 - imported for its classes
    from bastion.errors import iter_error_classes, render_errors_markdown

    names = {cls.__name__ for _, cls in iter_error_classes()}
    assert "ReconcileRefused" in names
    assert "KeyringVaultLocked" not in names
    assert "KeyringVaultLocked" not in render_errors_markdown()
