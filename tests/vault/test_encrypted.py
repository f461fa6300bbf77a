"""Encrypted-file backend: tampering, wrong keys, key sources, rekey and its atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.config import Config
from bastion.errors import ConfigError, DecryptionFailed, VaultLocked
from bastion.store import Database, WriteTx
from bastion.vault import Vault
from bastion.vault.backend import RecordRef
from bastion.vault.crypto import KdfParams

from .conftest import make_home, new_env_key, with_vault


def _raw(cfg: Config) -> Database:
    """A second, plain connection to vault.db: the attacker's view of the file."""
    return Database.open(cfg.vault_db_path, cfg.store, name="raw")


def _flip(blob: bytes, index: int = 0) -> bytes:
    return blob[:index] + bytes([blob[index] ^ 0x01]) + blob[index + 1 :]


@pytest.mark.parametrize("column", ["ciphertext", "nonce"])
def test_flipped_byte_fails_naming_the_record(file_vault: Vault, column: str) -> None:
    file_vault.set("TAMPERED", "tamper-me", scope="bot:7")
    with _raw(file_vault.config) as raw:
        blob = raw.scalar(f"SELECT {column} FROM vault_values WHERE name = 'TAMPERED'")
        raw.write(
            lambda tx: tx.execute(
                f"UPDATE vault_values SET {column} = ? WHERE name = 'TAMPERED'", (_flip(blob, 3),)
            )
        )
    with pytest.raises(DecryptionFailed) as info:
        file_vault.get("TAMPERED", scope="bot:7")
    assert "bot:7/TAMPERED" in info.value.message
    assert "tamper-me" not in info.value.message


def test_bound_fields_version_edit_fails(file_vault: Vault) -> None:
    file_vault.set("VERSIONED", "v")
    with _raw(file_vault.config) as raw:
        # The attacker edits both the index and the record's version: the AAD still binds it.
        raw.write(lambda tx: tx.execute("UPDATE vault_values SET version = version + 1"))
        raw.write(lambda tx: tx.execute("UPDATE vault_secrets SET version = version + 1"))
    with pytest.raises(DecryptionFailed) as info:
        file_vault.get("VERSIONED")
    assert "global/VERSIONED" in info.value.message


def test_ciphertext_moved_to_another_row_fails(file_vault: Vault) -> None:
    file_vault.set("VICTIM", "victim-value")
    file_vault.set("ATTACKER", "attacker-value")
    with _raw(file_vault.config) as raw:
        nonce, ct = raw.query_one(
            "SELECT nonce, ciphertext FROM vault_values WHERE name = 'VICTIM'"
        ) or (b"", b"")
        raw.write(
            lambda tx: tx.execute(
                "UPDATE vault_values SET nonce = ?, ciphertext = ? WHERE name = 'ATTACKER'",
                (nonce, ct),
            )
        )
    with pytest.raises(DecryptionFailed) as info:
        file_vault.get("ATTACKER")
    assert "global/ATTACKER" in info.value.message
    assert file_vault.get("VICTIM").reveal() == "victim-value"


def test_ciphertext_moved_to_another_scope_fails(file_vault: Vault) -> None:
    # Same name, same version, another scope: only the scope in the AAD tells the rows apart,
    # so a bot's record copied into another bot's row must not decrypt as that bot's secret.
    file_vault.set("API_KEY", "bot-1-value", scope="bot:1")
    file_vault.set("API_KEY", "bot-2-value", scope="bot:2")
    with _raw(file_vault.config) as raw:
        nonce, ct = raw.query_one(
            "SELECT nonce, ciphertext FROM vault_values WHERE scope = 'bot:1' AND name = 'API_KEY'"
        ) or (b"", b"")
        raw.write(
            lambda tx: tx.execute(
                "UPDATE vault_values SET nonce = ?, ciphertext = ? "
                "WHERE scope = 'bot:2' AND name = 'API_KEY'",
                (nonce, ct),
            )
        )
    with pytest.raises(DecryptionFailed) as info:
        file_vault.get("API_KEY", scope="bot:2")
    assert "bot:2/API_KEY" in info.value.message
    assert "bot-1-value" not in info.value.message
    assert file_vault.get("API_KEY", scope="bot:1").reveal() == "bot-1-value"


def test_values_are_not_in_the_file_in_plaintext(file_vault: Vault) -> None:
    file_vault.set("PLAIN", "plaintext-sentinel-12345")
    file_vault.close()
    cfg = file_vault.config
    for suffix in ("", "-wal"):
        path = Path(str(cfg.vault_db_path) + suffix)
        if path.exists():
            assert b"plaintext-sentinel-12345" not in path.read_bytes()
    assert cfg.vault_db_path.stat().st_mode & 0o777 == 0o600


def test_wrong_env_key_is_vault_locked(file_vault: Vault, file_cfg: Config) -> None:
    file_vault.set("K", "v")
    file_vault.close()
    with Vault.open(file_cfg, env={"BASTION_VAULT_KEY": new_env_key()}) as other:
        assert [m.name for m in other.list()] == ["K"]  # the index needs no key
        with pytest.raises(VaultLocked):
            other.get("K")


def test_missing_or_malformed_env_key(file_cfg: Config) -> None:
    with Vault.open(file_cfg, env={}) as vault:
        with pytest.raises(VaultLocked) as info:
            vault.set("K", "v")
        assert "BASTION_VAULT_KEY" in info.value.message
        assert "base64" in info.value.hint
    with (
        Vault.open(file_cfg, env={"BASTION_VAULT_KEY": "not-a-key"}) as vault,
        pytest.raises(VaultLocked),
    ):
        vault.set("K", "v")


def test_passphrase_unlock_and_wrong_passphrase(tmp_path: Path) -> None:
    cfg = make_home(
        tmp_path / "home",
        BASTION_VAULT_BACKEND="encrypted-file",
        BASTION_VAULT_KEY_SOURCE="passphrase",
    )
    with Vault.open(cfg, passphrase="correct horse battery staple") as vault:
        vault.set("P", "passphrase-protected")
    with Vault.open(cfg, env={"BASTION_VAULT_PASSPHRASE": "correct horse battery staple"}) as vault:
        assert vault.get("P").reveal() == "passphrase-protected"
        assert vault.backend_info()["kdf"]["alg"] == "argon2id"
    with Vault.open(cfg, passphrase="wrong horse") as vault, pytest.raises(VaultLocked):
        vault.get("P")


def test_default_kdf_is_at_least_64mib_3_passes(tmp_path: Path) -> None:
    from bastion.config import load_config

    cfg = load_config(tmp_path, env={})
    assert cfg.vault.argon2_memory_kib >= 64 * 1024
    assert cfg.vault.argon2_time_cost >= 3
    params = KdfParams.new(cfg.vault.argon2_memory_kib, cfg.vault.argon2_time_cost)
    stored = json.loads(params.to_json())
    assert stored["alg"] == "argon2id"
    assert KdfParams.from_json(params.to_json()) == params


def test_key_source_mismatch_is_explicit(file_vault: Vault, file_cfg: Config) -> None:
    file_vault.set("K", "v")
    file_vault.close()
    cfg = with_vault(file_cfg, key_source="passphrase")
    with Vault.open(cfg, passphrase="x") as vault:
        with pytest.raises(ConfigError) as info:
            vault.get("K")
        assert "rekey" in info.value.hint


def test_rekey_env_to_new_env_key_and_rotate(file_cfg: Config, env_key: str) -> None:
    new_key = new_env_key()
    with Vault.open(file_cfg, env={"BASTION_VAULT_KEY": env_key}) as vault:
        for i in range(20):
            vault.set(f"K{i}", f"value-{i}", scope="bot:1")
        before = {r[0]: r[1] for r in vault.db.query("SELECT name, ciphertext FROM vault_values")}
        result = vault.rekey("env", new_secret=new_key, rotate_data_key=True)
        assert result["records"] == 20
        after = {r[0]: r[1] for r in vault.db.query("SELECT name, ciphertext FROM vault_values")}
        assert all(before[n] != after[n] for n in before)
        assert vault.get("K3", scope="bot:1").reveal() == "value-3"
        fp_before = vault.meta("K3", scope="bot:1").fingerprint
    with (
        Vault.open(file_cfg, env={"BASTION_VAULT_KEY": env_key}) as old,
        pytest.raises(VaultLocked),
    ):
        old.get("K1", scope="bot:1")
    with Vault.open(file_cfg, env={"BASTION_VAULT_KEY": new_key}) as vault:
        assert vault.get("K19", scope="bot:1").reveal() == "value-19"
        # The fingerprint key survives a rotation: audit trails keep matching.
        assert vault.fingerprint("value-3") == fp_before
        ops = [e.operation for e in vault.audit_entries()]
        assert "rekey" in ops


def test_rekey_to_passphrase(file_cfg: Config, env_key: str) -> None:
    with Vault.open(file_cfg, env={"BASTION_VAULT_KEY": env_key}) as vault:
        vault.set("K", "survives")
        result = vault.rekey("passphrase", new_secret="new passphrase")
        assert 'vault.key_source = "passphrase"' in result["next"]
    cfg = with_vault(file_cfg, key_source="passphrase")
    with Vault.open(cfg, passphrase="new passphrase") as vault:
        assert vault.get("K").reveal() == "survives"


def test_failed_rotation_leaves_everything_as_it_was(file_cfg: Config, env_key: str) -> None:
    """Crash-safety of rekey: one transaction. A record that cannot be decrypted mid-way
    aborts the rotation; the old key and every record still work."""
    env = {"BASTION_VAULT_KEY": env_key}
    with Vault.open(file_cfg, env=env) as vault:
        for i in range(10):
            vault.set(f"K{i}", f"value-{i}")
        with _raw(file_cfg) as raw:
            blob = raw.scalar("SELECT ciphertext FROM vault_values WHERE name = 'K7'")
            raw.write(
                lambda tx: tx.execute(
                    "UPDATE vault_values SET ciphertext = ? WHERE name = 'K7'", (_flip(blob),)
                )
            )
        keys_before = vault.db.query("SELECT * FROM vault_keys")
        values_before = vault.db.query("SELECT * FROM vault_values ORDER BY name")
        with pytest.raises(DecryptionFailed):
            vault.rekey("env", new_secret=new_env_key(), rotate_data_key=True)
        assert vault.db.query("SELECT * FROM vault_keys") == keys_before
        assert vault.db.query("SELECT * FROM vault_values ORDER BY name") == values_before
    with Vault.open(file_cfg, env=env) as vault:
        assert vault.get("K6").reveal() == "value-6"


def test_two_processes_first_open_agree_on_one_key(file_cfg: Config, env_key: str) -> None:
    env = {"BASTION_VAULT_KEY": env_key}
    a = Vault.open(file_cfg, env=env)
    b = Vault.open(file_cfg, env=env)
    try:
        a.set("FROM_A", "a")
        assert b.get("FROM_A").reveal() == "a"
        assert a.db.scalar("SELECT count(*) FROM vault_keys") == 1
    finally:
        a.close()
        b.close()


def test_reconcile_encrypted_file_both_ways(file_vault: Vault) -> None:
    file_vault.set("ORPHANED", "value-without-index", scope="bot:3")
    file_vault.set("LOST", "value-will-vanish")
    with _raw(file_vault.config) as raw:
        raw.write(lambda tx: tx.execute("DELETE FROM vault_secrets WHERE name = 'ORPHANED'"))
        raw.write(lambda tx: tx.execute("DELETE FROM vault_values WHERE name = 'LOST'"))
    report = file_vault.reconcile()
    assert report["orphans"] == ["bot:3/ORPHANED"]
    assert report["missing"] == ["global/LOST"]
    fixed = file_vault.reconcile(fix=True)
    assert len(fixed["changes"]) == 2
    # Adopted at the version its ciphertext is bound to, so it still decrypts.
    assert file_vault.get("ORPHANED", scope="bot:3").reveal() == "value-without-index"
    assert not file_vault.exists("LOST")
    assert file_vault.reconcile()["orphans"] == []


REKEY_CHILD = """
import sys
from bastion.config import load_config
from bastion.vault import Vault
cfg = load_config(sys.argv[1], env={"BASTION_VAULT_BACKEND": "encrypted-file"})
with Vault.open(cfg, env={"BASTION_VAULT_KEY": sys.argv[2]}) as vault:
    vault.list()
    print("rekeying", flush=True)
    vault.rekey("env", new_secret=sys.argv[3], rotate_data_key=True)
    print("done", flush=True)
"""


@pytest.mark.slow
@pytest.mark.posix
def test_rekey_killed_mid_way_leaves_one_whole_key(file_cfg: Config, env_key: str) -> None:
    """SIGKILL during a data-key rotation: afterwards exactly one key opens the vault and
    every record decrypts under it -- never a mix of old and new ciphertexts."""
    import signal
    import subprocess
    import sys

    count = 3000
    with Vault.open(file_cfg, env={"BASTION_VAULT_KEY": env_key}) as vault:
        backend = vault.backend  # unlocks (creates the keys) before the bulk write below

        def fill(tx: WriteTx) -> None:
            # Bulk-load through the backend and index directly: 3,000 set() calls would be
            # slower and test nothing more here.
            for i in range(count):
                backend.write_value(tx, RecordRef("global", f"K{i:05d}", 1), f"value-{i}")
            tx.executemany(
                "INSERT INTO vault_secrets VALUES "
                "('global', ?, 'encrypted-file', 0, 0, NULL, 1, 1, '')",
                [(f"K{i:05d}",) for i in range(count)],
            )

        vault.db.write(fill)
    new_key = new_env_key()
    with subprocess.Popen(
        [sys.executable, "-c", REKEY_CHILD, str(file_cfg.home), env_key, new_key],
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "rekeying"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    opened = []
    for key in (env_key, new_key):
        with Vault.open(file_cfg, env={"BASTION_VAULT_KEY": key}) as vault:
            try:
                values = [vault.get(f"K{i:05d}").reveal() for i in range(count)]
            except VaultLocked:
                continue
            assert values == [f"value-{i}" for i in range(count)]
            opened.append(key)
    assert len(opened) == 1
