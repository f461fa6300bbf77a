"""Keychain backend: named errors for each failure mode, deadlines, refusal of unsafe keyring
backends, chunking, and reconcile through the Secret Service search API.

Tests that need a Secret Service either use the session ``scripts/run-tests.sh`` provides or
start their own ``dbus-run-session`` in a child process (the failure modes: no D-Bus, a locked
keyring, no collection at all), with a throwaway ``HOME``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from keyring.backend import KeyringBackend

from bastion.config import Config
from bastion.errors import KeychainTimeout, KeychainUnavailable, SecretTooLarge
from bastion.vault import Vault
from bastion.vault.keychain import choose_keyring

from .conftest import make_home, with_vault

PROBE = """
import json, sys
from bastion.config import load_config
from bastion.app import Home
from bastion.vault import Vault
from bastion.errors import BastionError
cfg = load_config(sys.argv[1], env={"BASTION_VAULT_KEYCHAIN_TIMEOUT_S": "10"})
Home.init(cfg).close()
try:
    with Vault.open(cfg) as vault:
        vault.set("PROBE", "probe-value")
        print(json.dumps({"ok": vault.get("PROBE").reveal() == "probe-value"}))
except BastionError as err:
    print(json.dumps(err.to_dict()))
"""


def _probe(tmp_path: Path, *, session: str | None) -> dict[str, Any]:
    """Run PROBE in a child: without D-Bus (session None) or in a fresh session whose
    keyring is set up by the shell snippet ``session``. The user's HOME (and so the keyring
    file) is ``tmp_path/userhome``, shared by the probes of one test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBUS_")}
    env["HOME"] = str(tmp_path / "userhome")
    Path(env["HOME"]).mkdir(exist_ok=True)
    argv = [sys.executable, "-c", PROBE, str(tmp_path / "home")]
    if session is not None:
        if not (shutil.which("dbus-run-session") and shutil.which("gnome-keyring-daemon")):
            pytest.skip("dbus-run-session / gnome-keyring-daemon not installed")
        argv = [
            "dbus-run-session",
            "--",
            "sh",
            "-c",
            f'{session} >/dev/null 2>&1; exec "$@"',
            "sh",
            *argv,
        ]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_no_dbus_session_is_keychain_unavailable_with_hint(tmp_path: Path) -> None:
    # keyrings.alt / keyrings.cryptfile are installed (test extra): "auto" must not fall back
    # to them; it must say what is wrong and how to fix it.
    result = _probe(tmp_path, session=None)
    assert result["code"] == "keychain_unavailable"
    assert "dbus-run-session" in result["hint"]
    assert "encrypted-file" in result["hint"]


@pytest.mark.keychain
def test_no_unlocked_collection_is_keychain_locked(tmp_path: Path) -> None:
    # gnome-keyring running but never unlocked: keyring raises InitError "Prompt dismissed".
    result = _probe(tmp_path, session="gnome-keyring-daemon --start --components=secrets")
    assert result["code"] == "keychain_locked"
    assert "Prompt dismissed" in result["message"]
    assert "unlock" in result["hint"].lower()


@pytest.mark.keychain
def test_locked_keyring_is_keychain_locked(tmp_path: Path) -> None:
    lock = (
        "echo -n pass | gnome-keyring-daemon --unlock --components=secrets >/dev/null 2>&1; "
        f"{sys.executable} -c 'import secretstorage as s; "
        "s.get_default_collection(s.dbus_init()).lock()'"
    )
    result = _probe(tmp_path, session=lock)
    assert result["code"] == "keychain_locked"


@pytest.mark.keychain
def test_wrong_unlock_password_is_keychain_locked(tmp_path: Path) -> None:
    # First session: the login keyring is created with "pass" and the probe works.
    result = _probe(
        tmp_path, session="echo -n pass | gnome-keyring-daemon --unlock --components=secrets"
    )
    assert result == {"ok": True}
    assert (tmp_path / "userhome/.local/share/keyrings/login.keyring").exists()
    # Second session, same keyring file, wrong password: keyring raises KeyringLocked.
    result = _probe(
        tmp_path, session="echo -n wrong | gnome-keyring-daemon --unlock --components=secrets"
    )
    assert result["code"] == "keychain_locked"
    assert "KeyringLocked" in result["message"]


class HangingKeyring(KeyringBackend):
    """A keyring backend stuck like a Secret Service waiting on an unlock prompt."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()
        self.finished = threading.Event()

    def _hang(self) -> None:
        self.entered.set()
        self.release.wait(60)
        self.finished.set()

    def get_password(self, service: str, username: str) -> str | None:
        self._hang()
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        self._hang()

    def delete_password(self, service: str, username: str) -> None:
        self._hang()


def test_hanging_keychain_times_out(tmp_path: Path) -> None:
    cfg = make_home(tmp_path / "home", BASTION_VAULT_KEYCHAIN_TIMEOUT_S="0.5")
    hanging = HangingKeyring()
    try:
        with Vault.open(cfg, keyring_backend=hanging) as vault:
            with pytest.raises(KeychainTimeout) as info:
                vault.set("SLOW", "value")
            # The mechanism, not a stopwatch: the call gave up while the keychain call it
            # made was still hanging (it would hang 60 s), so the deadline cut it short.
            assert hanging.entered.is_set()
            assert not hanging.finished.is_set()
            assert "0.5 s" in info.value.message
            assert not vault.exists("SLOW")
    finally:
        hanging.release.set()


@pytest.mark.parametrize(
    "name",
    [
        "keyrings.alt.file.PlaintextKeyring",
        "keyrings.cryptfile.file.PlaintextKeyring",
        "keyring.backends.fail.Keyring",
        "keyring.backends.null.Keyring",
    ],
)
def test_plaintext_and_zero_priority_backends_are_refused(name: str) -> None:
    with pytest.raises(KeychainUnavailable) as info:
        choose_keyring(name)
    assert name in info.value.message


def test_unknown_backend_name_is_explained() -> None:
    with pytest.raises(KeychainUnavailable) as info:
        choose_keyring("no.such.module.Keyring")
    assert "auto" in info.value.hint


def _secret_tool_items(service: str) -> list[str]:
    if shutil.which("secret-tool") is None:
        pytest.skip("secret-tool (libsecret-tools) not installed")
    done = subprocess.run(
        ["secret-tool", "search", "--all", "service", service],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    text = done.stdout + done.stderr
    return sorted(
        line.split("=", 1)[1].strip()
        for line in text.splitlines()
        if line.startswith("attribute.username")
    )


@pytest.mark.keychain
def test_chunking_splits_and_reassembles(keychain_cfg: Config) -> None:
    cfg = with_vault(keychain_cfg, keychain_max_chars=100)
    value = "".join(chr(0x41 + i % 26) for i in range(1050))
    with Vault.open(cfg) as vault:
        try:
            vault.set("BIG", value)
            assert vault.get("BIG").reveal() == value
            users = _secret_tool_items(cfg.vault.service)
            assert "global/BIG" in users
            assert [u for u in users if u.startswith("global/BIG#")] == sorted(
                f"global/BIG#{i}" for i in range(1, 12)
            )
            vault.set("BIG", "small now")
            assert vault.get("BIG").reveal() == "small now"
            assert not [u for u in _secret_tool_items(cfg.vault.service) if "#" in u]
            vault.set("BIG", value)
            vault.delete("BIG")
            assert [u for u in _secret_tool_items(cfg.vault.service) if "BIG" in u] == []
        finally:
            _cleanup(vault)


@pytest.mark.keychain
def test_chunking_off_refuses_with_the_limit(keychain_cfg: Config) -> None:
    cfg = with_vault(keychain_cfg, keychain_max_chars=100, chunking=False)
    with Vault.open(cfg) as vault:
        try:
            with pytest.raises(SecretTooLarge) as info:
                vault.set("BIG", "x" * 101)
            assert "100" in info.value.message
            assert not vault.exists("BIG")
        finally:
            _cleanup(vault)


@pytest.mark.keychain
def test_reconcile_finds_and_fixes_both_sides(keychain_vault: Vault) -> None:
    client = keychain_vault.backend.client  # type: ignore[attr-defined]
    keychain_vault.set("KEPT", "kept")
    keychain_vault.set("VANISHING", "soon gone", scope="bot:9")
    # An item bastion's service holds that the index lacks (written by another tool)...
    client.set("global/ORPHAN", "orphan-value")
    # ...and a value deleted behind bastion's back.
    client.delete("bot:9/VANISHING")
    assert "global/ORPHAN" in _secret_tool_items(keychain_vault.config.vault.service)

    report = keychain_vault.reconcile()
    assert report["orphans"] == ["global/ORPHAN"]
    assert report["missing"] == ["bot:9/VANISHING"]
    assert report["changes"] == []

    fixed = keychain_vault.reconcile(fix=True, actor="test")
    assert {(c["action"], c["name"]) for c in fixed["changes"]} == {
        ("adopted", "ORPHAN"),
        ("dropped", "VANISHING"),
    }
    assert keychain_vault.get("ORPHAN").reveal() == "orphan-value"
    assert not keychain_vault.exists("VANISHING", scope="bot:9")
    ops = {e.operation for e in keychain_vault.audit_entries()}
    assert {"reconcile-adopt", "reconcile-drop"} <= ops
    again = keychain_vault.reconcile()
    assert again["orphans"] == []
    assert again["missing"] == []


@pytest.mark.keychain
def test_keychain_describes_itself(keychain_vault: Vault) -> None:
    info = keychain_vault.backend_info()
    assert info["available"] is True
    assert info["keyring"] == "keyring.backends.SecretService.Keyring"
    assert info["selected"].startswith("auto: highest-priority OS keychain")
    assert info["why"].startswith("vault.backend = 'keychain'")


def _cleanup(vault: Vault) -> None:
    from .conftest import _wipe_service

    _wipe_service(vault)


@pytest.mark.keychain
def test_encrypted_file_with_keychain_held_key_and_rekey(keychain_cfg: Config) -> None:
    """vault.key_source = "keychain": a random KEK the Secret Service keeps; rekey to an env
    key removes the keychain item, rekey back creates a new one."""
    from .conftest import new_env_key

    cfg = with_vault(keychain_cfg, backend="encrypted-file", key_source="keychain")
    service = cfg.vault.service
    try:
        with Vault.open(cfg) as vault:
            vault.set("K", "kept-by-keychain-kek")
            kek_items = [u for u in _secret_tool_items(service) if "vault-kek" in u]
            assert len(kek_items) == 1
        with Vault.open(cfg) as vault:
            assert vault.get("K").reveal() == "kept-by-keychain-kek"
            env_key = new_env_key()
            vault.rekey("env", new_secret=env_key)
        assert [u for u in _secret_tool_items(service) if "vault-kek" in u] == []
        env_cfg = with_vault(cfg, key_source="env")
        with Vault.open(env_cfg, env={"BASTION_VAULT_KEY": env_key}) as vault:
            assert vault.get("K").reveal() == "kept-by-keychain-kek"
            vault.rekey("keychain", rotate_data_key=True)
        with Vault.open(cfg) as vault:
            assert vault.get("K").reveal() == "kept-by-keychain-kek"
    finally:
        with Vault.open(cfg) as vault:
            _cleanup(vault)


class DictKeyring(KeyringBackend):
    """A keychain that cannot enumerate its items (like macOS/Windows through keyring)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        from keyring.errors import PasswordDeleteError

        if self.items.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


def test_reconcile_where_the_keychain_cannot_list(tmp_path: Path) -> None:
    cfg = make_home(tmp_path / "home")
    store = DictKeyring()
    with Vault.open(cfg, keyring_backend=store) as vault:
        vault.set("KEPT", "a")
        vault.set("GONE", "b")
        store.items.pop(("bastion", "global/GONE"))
        report = vault.reconcile()
        assert report["orphans_checked"] is False
        assert report["orphans"] == []
        assert report["missing"] == ["global/GONE"]
        assert vault.reconcile(fix=True)["changes"] == [
            {"action": "dropped", "scope": "global", "name": "GONE"}
        ]


@pytest.mark.keychain
def test_reconcile_fix_refuses_to_drop_every_row_seen_through_the_wrong_keychain(
    keychain_cfg: Config,
) -> None:
    from bastion.errors import VaultError

    with Vault.open(keychain_cfg) as vault:
        vault.set("ONE", "value-one")
        vault.set("TWO", "value-two")
    # Same vault.db, another service name: every value looks gone from here.
    wrong = with_vault(keychain_cfg, service=keychain_cfg.vault.service + "-other")
    with Vault.open(wrong) as vault:
        report = vault.reconcile()
        assert sorted(report["missing"]) == ["global/ONE", "global/TWO"]
        with pytest.raises(VaultError, match="would drop all 2 index rows") as info:
            vault.reconcile(fix=True)
        assert "vault.service" in info.value.hint
        assert {m.name for m in vault.list()} == {"ONE", "TWO"}  # nothing dropped
    with Vault.open(keychain_cfg) as vault:
        assert vault.get("ONE").reveal() == "value-one"
        assert vault.reconcile(fix=True)["changes"] == []
    with Vault.open(wrong) as vault:
        dropped = vault.reconcile(fix=True, allow_drop_all=True)["changes"]
        assert sorted(c["name"] for c in dropped) == ["ONE", "TWO"]
