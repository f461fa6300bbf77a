"""The vault's edges (issue #15 §4) on a real Secret Service (gnome-keyring in a D-Bus session,
scripts/run-tests.sh): batch reads, scope deletion across a kill -9, adoption of another
application's items."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bastion.cli import cli
from bastion.config import Config
from bastion.vault import Vault

from .conftest import another_apps_items, with_vault

pytestmark = pytest.mark.keychain


def _raw_keyring() -> Any:
    from keyring.backends.SecretService import Keyring

    return Keyring()


class CountingKeyring:
    """keyring's Secret Service backend, counting the single-item reads that reach it."""

    @staticmethod
    def make() -> Any:
        from keyring.backends.SecretService import Keyring

        class Counting(Keyring):  # type: ignore[misc]
            gets = 0

            def get_password(self, service: str, username: str) -> str | None:
                type(self).gets += 1
                return super().get_password(service, username)  # type: ignore[no-any-return]

        return Counting()


# --- get_many ----------------------------------------------------------------------------------


def test_get_many_reads_twenty_keys_in_one_batch(keychain_cfg: Config) -> None:
    # Chunked items too: a 2,000-character value under a 500-character item limit.
    cfg = with_vault(keychain_cfg, keychain_max_chars=500)
    counting = CountingKeyring.make()
    with Vault.open(cfg, keyring_backend=counting) as vault:
        try:
            for i in range(20):
                vault.set(f"K{i:02d}", f"value-{i}", scope="bot:7")
            vault.set("BIG", "x" * 2000, scope="bot:7")
            vault.fingerprint("warm")  # the fingerprint key, read once
            before = type(counting).gets
            values = vault.get_many(scope="bot:7")
            # The mechanism: no per-item keyring read; one Secret Service batch instead.
            assert type(counting).gets == before
            assert {k: v.reveal() for k, v in values.items()} == {
                **{f"K{i:02d}": f"value-{i}" for i in range(20)},
                "BIG": "x" * 2000,
            }
            picked = vault.get_many(["K05", "BIG"], scope="bot:7")
            assert picked["BIG"].reveal() == "x" * 2000
            assert type(counting).gets == before
        finally:
            vault.delete_scope("bot:7")


def test_get_many_reports_a_value_gone_from_the_keychain(keychain_vault: Vault) -> None:
    from bastion.errors import SecretNotFound

    keychain_vault.set("A", "a", scope="bot:1")
    keychain_vault.set("B", "b", scope="bot:1")
    _raw_keyring().delete_password(keychain_vault.config.vault.service, "bot:1/B")
    with pytest.raises(SecretNotFound, match="bot:1/B is in the index but its value is gone"):
        keychain_vault.get_many(scope="bot:1")


# --- delete_scope across a kill -9 -------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, threading
    from keyring.backends.SecretService import Keyring
    from bastion.config import load_config
    from bastion.vault import Vault

    block_at = int(sys.argv[2])

    class Stalling(Keyring):
        deletes = 0
        def delete_password(self, service, username):
            type(self).deletes += 1
            if type(self).deletes == block_at:
                print("stalled", flush=True)
                threading.Event().wait()  # until the parent's SIGKILL
            return super().delete_password(service, username)

    vault = Vault.open(load_config(sys.argv[1]), keyring_backend=Stalling())
    vault.fingerprint("warm")
    vault.delete_scope("bot:7", actor="child")
    print("finished", flush=True)
    """
)


@pytest.fixture
def scope_items(keychain_cfg: Config) -> Iterator[list[str]]:
    names = [f"K{i}" for i in range(5)]
    with Vault.open(keychain_cfg) as vault:
        for name in names:
            vault.set(name, f"value-{name}", scope="bot:7")
        vault.set("KEEP", "kept", scope="bot:8")
    yield names
    with Vault.open(keychain_cfg) as vault:
        for scope in vault.scopes():
            vault.delete_scope(scope)


@pytest.mark.posix
@pytest.mark.parametrize("block_at", [1, 3], ids=["before-any-item", "halfway"])
def test_a_scope_delete_killed_between_steps_is_finished_by_the_next_open(
    keychain_cfg: Config, scope_items: list[str], block_at: int, tmp_path: Path
) -> None:
    service = keychain_cfg.vault.service
    env = {
        **os.environ,
        "BASTION_VAULT_BACKEND": "keychain",
        "BASTION_VAULT_SERVICE": service,
        "BASTION_VAULT_KEYCHAIN_TIMEOUT_S": "120",
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(keychain_cfg.home), str(block_at)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "stalled", child.stderr.read()
        child.send_signal(signal.SIGKILL)  # between the commit and the last keychain delete
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()

    raw = _raw_keyring()
    left = [n for n in scope_items if raw.get_password(service, f"bot:7/{n}") is not None]
    assert len(left) == len(scope_items) - (block_at - 1)  # the killed one never ran
    # The index change was committed whole; the journal remembers every item left.
    from bastion.store import Database

    db = Database.open(keychain_cfg.vault_db_path, keychain_cfg.store, name="vault")
    try:
        assert db.query("SELECT name FROM vault_secrets WHERE scope = 'bot:7'") == []
        journal = {str(r[0]) for r in db.query("SELECT name FROM vault_pending_deletes")}
        assert {f"{n}" for n in left} <= journal
    finally:
        db.close()

    with Vault.open(keychain_cfg) as vault:  # the next open finishes the deletion
        assert vault.db.scalar("SELECT count(*) FROM vault_pending_deletes") == 0
        assert vault.get("KEEP", "bot:8").reveal() == "kept"
        assert [m.name for m in vault.list("bot:7")] == []
    assert [n for n in scope_items if raw.get_password(service, f"bot:7/{n}")] == []
    assert raw.get_password(service, "bot:8/KEEP") == "kept"


def test_a_set_after_a_scope_delete_is_never_deleted_by_the_journal(
    keychain_vault: Vault,
) -> None:
    vault = keychain_vault
    vault.set("K", "old", scope="bot:9")
    vault.fingerprint("warm")  # backend open: nothing finishes behind the test's back
    # Another process's delete_scope, committed, its keychain step not yet run:
    vault.db.write(
        lambda tx: tx.execute(
            "INSERT INTO vault_pending_deletes VALUES ('bot:9', 'K', 'keychain', 0)"
        )
    )
    vault.set("K", "new", scope="bot:9")  # the new value supersedes the journaled delete
    assert vault.finish_pending_deletes() == 0
    assert vault.get("K", "bot:9").reveal() == "new"
    vault.delete_scope("bot:9")


def test_reconcile_does_not_adopt_an_item_journaled_for_deletion(keychain_vault: Vault) -> None:
    vault = keychain_vault
    service = vault.config.vault.service
    _raw_keyring().set_password(service, "bot:5/STRAY", "left by a crash")
    assert vault.reconcile()["orphans"] == ["bot:5/STRAY"]
    vault.db.write(
        lambda tx: tx.execute(
            "INSERT INTO vault_pending_deletes VALUES ('bot:5', 'STRAY', 'keychain', 0)"
        )
    )
    assert vault.reconcile(fix=True)["changes"] == []
    assert vault.finish_pending_deletes() == 1
    assert _raw_keyring().get_password(service, "bot:5/STRAY") is None


def test_delete_scope_also_removes_unindexed_items_of_the_scope(keychain_vault: Vault) -> None:
    vault = keychain_vault
    service = vault.config.vault.service
    vault.set("A", "a", scope="bot:6")
    _raw_keyring().set_password(service, "bot:6/STRAY", "left by a crash")
    result = vault.delete_scope("bot:6")
    assert [m.name for m in result.deleted] == ["A"]
    assert _raw_keyring().get_password(service, "bot:6/STRAY") is None
    assert _raw_keyring().get_password(service, "bot:6/A") is None


# --- adopt -------------------------------------------------------------------------------------


@pytest.fixture
def other_app() -> Iterator[str]:
    """Items another app (seed 000: service ``com.aios.secrets``, plain usernames) stored."""
    items = {
        "openai_api_key": "sk-adopted-value-1",
        "anthropic_api_key": "sk-ant-adopted-2",
        "has space": "not a bastion name",
    }
    with another_apps_items("com.aios.secrets", items) as service:
        yield service


def test_adopt_brings_another_apps_items_into_the_index(
    keychain_cfg: Config, other_app: str
) -> None:
    env = {"BASTION_VAULT_BACKEND": "keychain", "BASTION_VAULT_SERVICE": keychain_cfg.vault.service}
    with Vault.open(keychain_cfg) as vault:
        vault.set("anthropic_api_key", "another value", scope="desk")

    def adopt() -> dict[str, Any]:
        result = CliRunner(env=env).invoke(
            cli,
            [
                "--home",
                str(keychain_cfg.home),
                "secrets",
                "adopt",
                "--service",
                other_app,
                "--scope",
                "desk",
                "--json",
            ],
        )
        assert result.exit_code == 0, result.output
        assert "sk-adopted" not in result.output  # names, never values
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    first = adopt()
    assert first["supported"] is True
    assert first["adopted"] == ["openai_api_key"]
    skipped = {s["name"]: s["why"] for s in first["skipped"]}
    assert "exists with another value" in skipped["anthropic_api_key"]
    assert "not a valid secret name" in skipped["has space"]
    with Vault.open(keychain_cfg) as vault:
        assert vault.get("openai_api_key", "desk").reveal() == "sk-adopted-value-1"
        assert vault.get("anthropic_api_key", "desk").reveal() == "another value"
        ops = [e.operation for e in vault.audit_entries(name="openai_api_key")]
        assert "adopt" in ops
    assert adopt()["unchanged"] == ["openai_api_key"]  # idempotent
    # The originals are left to their app.
    assert _raw_keyring().get_password(other_app, "openai_api_key") == "sk-adopted-value-1"
    with Vault.open(keychain_cfg) as vault:
        vault.delete_scope("desk")
