"""Secret names and scopes are compared without case when a secret is created (vault migration
0005, ``Index.case_twin``).

Windows' Credential Manager matches target names without case: ``global/API_KEY`` and
``global/api_key`` are one keychain item there, so setting the second replaced the first's
value while the index went on listing two secrets. The new spelling is refused on every system
and backend, before anything is written; every path that creates secrets (set, the API,
import, a bundle's migration, adopt) refuses it or skips it, and none leaves half its work
done.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bastion.cli import cli
from bastion.config import Config
from bastion.errors import Conflict, ImportFailed
from bastion.store.plan import assert_plan
from bastion.vault import Vault
from bastion.vault.importer import import_file, migrate_bundle

from .conftest import another_apps_items, make_home, new_env_key

TWINS = [("global", "API_KEY", "global", "api_key"), ("global", "Api_Key", "GLOBAL", "api_key")]


@pytest.mark.parametrize(("scope", "name", "twin_scope", "twin_name"), TWINS)
def test_a_name_that_differs_only_in_case_is_refused_and_the_first_keeps_its_value(
    file_vault: Vault, scope: str, name: str, twin_scope: str, twin_name: str
) -> None:
    file_vault.set(name, "first-value", scope=scope)
    with pytest.raises(Conflict) as caught:
        file_vault.set(twin_name, "second-value", scope=twin_scope)
    err = caught.value
    assert f"{twin_scope}/{twin_name} differs only in case from the existing secret " in err.message
    assert f"{scope}/{name}" in err.message
    assert "second-value" not in err.message + err.hint
    assert err.details["existing_name"] == name
    assert [(m.scope, m.name) for m in file_vault.list()] == [(scope, name)]
    assert file_vault.get(name, scope=scope).reveal() == "first-value"
    sets = [e for e in file_vault.audit_entries() if e.operation == "set"]
    assert [(e.scope, e.name) for e in sets] == [(scope, name)]
    # The same spelling updates as always, and a name that only contains another is no twin.
    file_vault.set(name, "updated", scope=scope)
    file_vault.set(name + "_2", "other", scope=scope)
    assert file_vault.get(name, scope=scope).reveal() == "updated"


def test_a_vault_that_holds_twins_from_before_the_rule_goes_on_working(file_vault: Vault) -> None:
    file_vault.set("TOKEN", "upper", scope="global")

    def older_vault(tx: Any) -> None:  # what a vault made before migration 0005 may hold
        tx.execute(
            "INSERT INTO vault_secrets SELECT scope, 'token', backend, created_at, updated_at, "
            "last_used_at, size, version, fingerprint FROM vault_secrets WHERE name = 'TOKEN'"
        )
        tx.execute(
            "INSERT INTO vault_values SELECT scope, 'token', version, nonce, ciphertext "
            "FROM vault_values WHERE name = 'TOKEN'"
        )

    file_vault.db.write(older_vault)
    file_vault.set("token", "lower", scope="global")  # an update, not a creation
    assert file_vault.get("token").reveal() == "lower"
    assert file_vault.get("TOKEN").reveal() == "upper"


def test_the_check_is_an_index_search_not_a_scan(file_vault: Vault) -> None:
    for i in range(50):
        file_vault.set(f"K{i}", "v", scope=f"s{i % 5}")
    sql = (
        "SELECT scope, name FROM vault_secrets WHERE scope = ? COLLATE NOCASE "
        "AND name = ? COLLATE NOCASE AND NOT (scope = ? AND name = ?) LIMIT 1"
    )
    assert_plan(file_vault.db, sql, ("s1", "k1", "s1", "k1"), index="vault_secrets_nocase")
    assert file_vault.index.case_twin("S1", "k1") == ("s1", "K1")
    assert file_vault.index.case_twin("s1", "K1") is None  # itself


def test_set_over_the_cli_refuses_it_with_the_fix(file_cfg: Config) -> None:
    env_key = new_env_key()
    env = {"BASTION_VAULT_KEY": env_key, "BASTION_VAULT_BACKEND": "encrypted-file"}

    def cli_set(name: str, value: str) -> Any:
        return CliRunner(env=env).invoke(
            cli,
            ["--home", str(file_cfg.home), "secrets", "set", name, "--from-stdin", "--json"],
            input=value,
        )

    assert cli_set("OPENAI_API_KEY", "sk-first").exit_code == 0
    refused = cli_set("openai_api_key", "sk-second-never-shown")
    assert refused.exit_code != 0
    body = json.loads(refused.stdout)
    assert body["code"] == "conflict"
    assert "differs only in case from the existing secret global/OPENAI_API_KEY" in body["message"]
    assert "Use the existing name `OPENAI_API_KEY`" in body["hint"]
    assert "sk-second-never-shown" not in refused.output


def test_an_import_with_twins_stores_nothing_and_leaves_the_file(
    file_vault: Vault, tmp_path: Path
) -> None:
    env_file = tmp_path / "app.env"
    original = "TOKEN_X=sk-one-aaaaaaaaaaaaaaaa\ntoken_x=sk-two-bbbbbbbbbbbbbbbb\n"
    env_file.write_text(original)
    with pytest.raises(ImportFailed, match="TOKEN_X and token_x differ only in case"):
        import_file(file_vault, env_file, backup=False)
    assert file_vault.list() == []
    assert env_file.read_text() == original
    # A key that is a twin of a secret already stored: refused before the file's other keys.
    file_vault.set("TOKEN_X", "stored", scope="global")
    env_file.write_text("AAA_KEY=sk-aaaaaaaaaaaaaaaaaaaa\ntoken_x=sk-two-bbbbbbbbbbbbbbbb\n")
    with pytest.raises(ImportFailed, match="token_x: global/token_x differs only in case"):
        import_file(file_vault, env_file, backup=False)
    assert [m.name for m in file_vault.list()] == ["TOKEN_X"]
    assert "sk-aaaaaaaaaaaaaaaaaaaa" in env_file.read_text()


def test_a_bundle_with_twins_stores_nothing(file_vault: Vault) -> None:
    cleared: list[bool] = []
    with pytest.raises(ImportFailed, match="differ only in case"):
        migrate_bundle(
            file_vault,
            {"Slack_Token": "x1", "slack_token": "x2", "a_first_key": "x3"},
            scope="bot:1",
            name_for=lambda key: key,
            on_complete=lambda: cleared.append(True),
        )
    assert file_vault.list() == []
    assert cleared == []


@pytest.fixture
def twin_items() -> Iterator[str]:
    """Items another app stored under one service, two spelt the same but for case (the Secret
    Service tells them apart; Windows would not)."""
    items = {"SLACK_TOKEN": "xoxb-upper", "slack_token": "xoxb-lower"}
    with another_apps_items("com.other", items) as service:
        yield service


@pytest.mark.keychain
def test_adopt_takes_one_of_two_twins_and_says_why_it_skipped_the_other(
    keychain_vault: Vault, twin_items: str
) -> None:
    report = keychain_vault.adopt(twin_items, "desk")
    assert report.adopted == ("SLACK_TOKEN",)
    assert dict(report.skipped) == {"slack_token": "differs only in case from desk/SLACK_TOKEN"}
    assert keychain_vault.get("SLACK_TOKEN", "desk").reveal() == "xoxb-upper"
    keychain_vault.delete_scope("desk")


def test_an_encrypted_home_made_before_the_rule_migrates(tmp_path: Path) -> None:
    """The migration adds the index to an existing vault.db and records itself."""
    cfg = make_home(tmp_path / "home", BASTION_VAULT_BACKEND="encrypted-file")
    key = new_env_key()
    with Vault.open(cfg, env={"BASTION_VAULT_KEY": key}) as vault:
        vault.set("K", "v")

        def before_0005(tx: Any) -> None:
            tx.execute("DROP INDEX vault_secrets_nocase")
            tx.execute("DELETE FROM schema_migrations WHERE namespace = 'vault' AND id >= '0005'")

        vault.db.write(before_0005)
    with Vault.open(cfg, env={"BASTION_VAULT_KEY": key}) as vault:
        names = [
            r[0] for r in vault.db.query("SELECT name FROM sqlite_master WHERE type = 'index'")
        ]
        assert "vault_secrets_nocase" in names
        with pytest.raises(Conflict):
            vault.set("k", "w")
