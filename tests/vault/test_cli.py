"""``bastion secrets …`` in-process: output, JSON, exit codes; values never from argv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from bastion.cli import cli
from bastion.config import Config
from bastion.vault import Vault

from .conftest import FAST_KDF, make_home, new_env_key


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    env = {
        "BASTION_HOME": str(home),
        "BASTION_VAULT_BACKEND": "encrypted-file",
        "BASTION_VAULT_KEY": new_env_key(),
        **FAST_KDF,
    }
    make_home(home, BASTION_VAULT_BACKEND="encrypted-file")
    return env


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["secrets", *args], input=stdin, env=env)


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_set_get_list_delete(cli_env: dict[str, str]) -> None:
    result = run(cli_env, "set", "OPENAI_API_KEY", "--from-stdin", stdin="sk-cli-value\n")
    assert result.exit_code == 0, result.output
    assert "stored global/OPENAI_API_KEY (version 1, 12 bytes)" in result.stdout

    masked = run(cli_env, "get", "OPENAI_API_KEY")
    assert masked.stdout.strip() == "global/OPENAI_API_KEY = ********"
    revealed = run(cli_env, "get", "OPENAI_API_KEY", "--reveal")
    assert revealed.stdout == "sk-cli-value\n"
    data = as_json(run(cli_env, "get", "OPENAI_API_KEY", "--json"))
    assert data["value"] == "********"
    assert data["version"] == 1

    run(cli_env, "set", "TOKEN", "--scope", "bot:42", stdin="t")
    rows = as_json(run(cli_env, "list", "--json"))
    assert [(r["scope"], r["name"]) for r in rows] == [
        ("bot:42", "TOKEN"),
        ("global", "OPENAI_API_KEY"),
    ]
    assert "OPENAI_API_KEY" in run(cli_env, "list").stdout

    deleted = as_json(run(cli_env, "delete", "TOKEN", "--scope", "bot:42", "--json"))
    assert deleted == {"deleted": "bot:42/TOKEN", "version": 1}


def test_error_exit_codes_and_hints(cli_env: dict[str, str]) -> None:
    missing = run(cli_env, "get", "NOPE")
    assert missing.exit_code == 66
    assert "error: no secret global/NOPE" in missing.stderr
    assert "hint: List the stored names" in missing.stderr
    missing_json = run(cli_env, "get", "NOPE", "--json")
    assert json.loads(missing_json.stdout)["code"] == "secret_not_found"

    run(cli_env, "set", "CAS", stdin="one")
    conflict = run(cli_env, "set", "CAS", "--expected-version", "5", stdin="two")
    assert conflict.exit_code == 65

    env = {**cli_env, "BASTION_VAULT_RULES": "N8N_WEBHOOK_URL=https_url"}
    refused = run(env, "set", "N8N_WEBHOOK_URL", stdin="http://n8n.example.com/x")
    assert refused.exit_code == 65  # a refused value: fix your input (docs/errors.md)
    assert "https_url" in refused.stderr
    assert "n8n.example.com" not in refused.stderr

    locked = run({**cli_env, "BASTION_VAULT_KEY": new_env_key()}, "get", "CAS")
    assert locked.exit_code == 77
    assert "does not unlock" in locked.stderr


@pytest.mark.parametrize("stdin", ["", "\n"])
def test_an_empty_value_is_refused_and_nothing_is_stored(
    cli_env: dict[str, str], stdin: str
) -> None:
    result = run(cli_env, "set", "EMPTY", stdin=stdin)
    assert result.exit_code == 65, result.output
    assert "the value for global/EMPTY is empty; nothing was stored" in result.stderr
    assert run(cli_env, "list", "--json").stdout.strip() == "[]"


def test_an_empty_prompt_is_refused_and_the_prompt_shows_no_default(
    cli_env: dict[str, str],
) -> None:
    # Enter twice at the prompt: before, this stored 0 bytes after `value []:`.
    result = run(cli_env, "set", "EMPTY", "--prompt", stdin="\n\n")
    assert result.exit_code == 65, result.output
    assert "[]" not in result.output
    assert "value: " in result.output
    assert run(cli_env, "list", "--json").stdout.strip() == "[]"


@pytest.mark.parametrize(
    "args",
    [
        ("set", "bad name"),
        ("set", "OK", "--scope", "bad scope!"),
        ("get", "bad name"),
        ("delete", "../etc"),
        ("list", "--scope", "bad scope!"),
    ],
)
def test_an_invalid_name_is_refused_before_the_value_is_read(
    cli_env: dict[str, str], args: tuple[str, ...]
) -> None:
    import io

    class Tripwire(io.BytesIO):
        """stdin that fails the test if anything reads it."""

        def read(self, size: int | None = -1, /) -> bytes:
            if size == 0:
                return b""  # click probes the stream with read(0)
            raise AssertionError("the value was read before the name was checked")

        read1 = readline = read  # type: ignore[assignment]

    result = CliRunner().invoke(cli, ["secrets", *args], input=Tripwire(), env=cli_env)
    code, stderr = result.exit_code, result.stderr
    assert code == 65, stderr
    assert "Traceback" not in stderr
    assert "error: " in stderr
    assert "hint: " in stderr


def test_a_masked_get_and_a_reveal_are_audited_apart(cli_env: dict[str, str]) -> None:
    assert run(cli_env, "set", "K", stdin="v").exit_code == 0
    assert run(cli_env, "get", "K").exit_code == 0
    assert run(cli_env, "get", "K", "--reveal").exit_code == 0
    rows = as_json(run(cli_env, "audit", "--name", "K", "--json"))
    assert [r["operation"] for r in rows] == ["reveal", "get", "set"]


def test_keygen_prints_a_key_the_encrypted_vault_accepts(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    import base64

    key = run(cli_env, "keygen").stdout.strip()
    assert len(base64.b64decode(key, validate=True)) == 32
    assert key != run(cli_env, "keygen").stdout.strip()
    env = {**cli_env, "BASTION_HOME": str(tmp_path / "fresh"), "BASTION_VAULT_KEY": key}
    assert CliRunner().invoke(cli, ["init"], env=env).exit_code == 0
    assert run(env, "set", "A", stdin="x").exit_code == 0
    assert run(env, "get", "A", "--reveal").stdout == "x\n"


def test_prompt_without_echo(cli_env: dict[str, str]) -> None:
    result = run(cli_env, "set", "PROMPTED", "--prompt", stdin="typed-secret\ntyped-secret\n")
    assert result.exit_code == 0, result.output
    assert "typed-secret" not in result.output
    revealed = run(cli_env, "get", "PROMPTED", "--reveal")
    assert revealed.stdout == "typed-secret\n"


def test_reveal_can_be_disabled(cli_env: dict[str, str]) -> None:
    run(cli_env, "set", "X", stdin="v")
    result = run({**cli_env, "BASTION_VAULT_ALLOW_REVEAL": "false"}, "get", "X", "--reveal")
    assert result.exit_code == 77
    assert "allow_reveal" in result.stderr


def test_no_value_option_on_argv(cli_env: dict[str, str]) -> None:
    result = run(cli_env, "set", "X", "sk-on-argv")
    assert result.exit_code == 2  # click: unexpected extra argument


def test_status_declared_and_backend_reason(cli_env: dict[str, str]) -> None:
    run(cli_env, "set", "ELEVENLABS_API_KEY", stdin="k")
    data = as_json(
        run(
            cli_env,
            "status",
            "--declared",
            "ELEVENLABS_API_KEY",
            "--declared",
            "N8N_WEBHOOK_URL",
            "--json",
        )
    )
    assert data["secrets"]["ELEVENLABS_API_KEY"]["configured"] is True
    assert data["secrets"]["N8N_WEBHOOK_URL"]["configured"] is False
    assert "BASTION_VAULT_BACKEND" in data["why"]
    assert data["backend_info"]["available"] is True
    human = run(cli_env, "status", "--declared", "N8N_WEBHOOK_URL").stdout
    assert "backend: encrypted-file" in human
    assert "NOT SET" in human


def test_import_reconcile_rekey_audit(cli_env: dict[str, str], tmp_path: Path) -> None:
    env_file = tmp_path / "proj" / ".env"
    env_file.parent.mkdir()
    env_file.write_text("GITHUB_TOKEN=ghp_cli_import_0123456789abcdef\nPORT=1\n")
    dry = as_json(run(cli_env, "import", str(env_file), "--dry-run", "--json"))
    assert dry["items"][0]["action"] == "would-set"
    report = as_json(run(cli_env, "import", str(env_file), "--json"))
    assert report["rewritten"] is True
    assert env_file.read_text() == "GITHUB_TOKEN=secret:global/GITHUB_TOKEN\nPORT=1\n"
    assert "nothing to change" in run(cli_env, "import", str(env_file)).stdout

    rec = as_json(run(cli_env, "reconcile", "--json"))
    assert rec["orphans"] == []
    assert rec["missing"] == []

    new_key = new_env_key()
    rekeyed = as_json(
        run(
            {**cli_env, "NEW_KEY": new_key},
            "rekey",
            "--new-key-env",
            "NEW_KEY",
            "--rotate-data-key",
            "--json",
        )
    )
    assert rekeyed == {"key_source": "env", "rotated_data_key": True, "records": 1}
    after = run({**cli_env, "BASTION_VAULT_KEY": new_key}, "get", "GITHUB_TOKEN", "--reveal")
    assert after.stdout.strip() == "ghp_cli_import_0123456789abcdef"

    env = {**cli_env, "BASTION_VAULT_KEY": new_key}
    rows = as_json(run(env, "audit", "--name", "GITHUB_TOKEN", "--json"))
    # `get --reveal` showed the value to a person: recorded as reveal, not as a masked get.
    assert [r["operation"] for r in rows] == ["reveal", "import"]
    fp = as_json(run(env, "audit", "hash", "--json", stdin="ghp_cli_import_0123456789abcdef\n"))
    assert fp["fingerprint"] == rows[0]["fingerprint"]
    assert run(env, "audit").stdout.count("\n") >= 3


def test_help_for_every_command(cli_env: dict[str, str]) -> None:
    for sub in ["set", "get", "list", "delete", "status", "import", "reconcile", "rekey", "audit"]:
        result = run(cli_env, sub, "--help")
        assert result.exit_code == 0
        assert "--json" in result.stdout


def test_list_works_without_a_keychain(tmp_path: Path) -> None:
    """``list`` and ``status`` read the index only: no keychain needed (none is here)."""
    home = tmp_path / "home"
    cfg: Config = make_home(home)
    assert cfg.vault.backend == "keychain"
    env = {"BASTION_HOME": str(home), "DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent"}
    assert as_json(run(env, "list", "--json")) == []
    status = as_json(run(env, "status", "--json"))
    assert status["count"] == 0
    assert status["backend_info"]["available"] is False
    assert status["backend_info"]["error"]["code"] in {"keychain_unavailable", "keychain_locked"}


def _doctor_without_a_keychain(home: Path) -> subprocess.CompletedProcess[str]:
    """``bastion doctor`` in a process whose D-Bus session bus does not exist (a fresh
    process: the keyring backend is chosen anew)."""
    env = {
        **os.environ,
        "BASTION_HOME": str(home),
        "DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent",
    }
    return subprocess.run(
        [sys.executable, "-m", "bastion", "doctor", "--quick", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_doctor_says_why_the_keychain_does_not_answer_and_how_to_fix_it(tmp_path: Path) -> None:
    """With no secret stored, a keychain that does not answer is a warning with the vault's
    reason and fix (the report said only "does not answer", under "problems: 0")."""
    home = tmp_path / "home"
    Vault.open(make_home(home)).close()  # vault.db: the index the report reads
    report = json.loads(_doctor_without_a_keychain(home).stdout)
    assert not [p for p in report["problems"] if "backend" in p]
    (said,) = [w for w in report["warnings"] if w.startswith("vault:")]
    assert "keychain backend does not answer" in said
    assert "no secret is stored yet" in said
    assert 'vault.backend = "encrypted-file"' in said  # the hint: how to fix it


@pytest.mark.keychain
def test_doctor_counts_a_keychain_that_does_not_answer_when_secrets_are_stored(
    keychain_vault: Vault,
) -> None:
    """Secrets on record that cannot be read stop the services using them: a problem (exit
    1), with the reason and the fix; the value is never in the report."""
    keychain_vault.set("OPENAI_API_KEY", "sk-doctor-" + "q" * 20)
    done = _doctor_without_a_keychain(keychain_vault.config.home)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    (said,) = [p for p in report["problems"] if "backend" in p]
    assert not [w for w in report["warnings"] if w.startswith("vault:")]
    assert "keychain backend does not answer" in said
    assert "DBUS_SESSION_BUS_ADDRESS" in said
    assert "sk-doctor-" not in done.stdout + done.stderr


@pytest.mark.parametrize("args", [("set", "LATIN"), ("audit", "hash")])
def test_a_value_piped_in_another_encoding_is_refused_not_a_traceback(
    cli_env: dict[str, str], args: tuple[str, ...]
) -> None:
    """Latin-1 bytes on stdin (a real process: its stdin decodes with surrogateescape) were
    a UnicodeEncodeError traceback out of the vault's fingerprint."""
    done = subprocess.run(
        [sys.executable, "-m", "bastion", "secrets", *args],
        input=b"caf\xe9-s3cr3t-latin",
        env={**os.environ, **cli_env, "LC_ALL": "C"},
        capture_output=True,
        timeout=60,
        check=False,
    )
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 65, err
    assert "Traceback" not in err
    assert "is not UTF-8 text (character 4 of 17" in err
    assert b"s3cr3t" not in done.stdout + done.stderr
    assert as_json(run(cli_env, "list", "--json")) == []
