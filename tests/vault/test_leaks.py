"""Leak scan: one sentinel secret set, read, imported and injected through every path; then
every file under the home (vault.db, -wal, backups), every audit row, every CLI output and
every error text is searched for it. Expected: 0 occurrences outside ciphertext."""

from __future__ import annotations

import base64
import json
import logging
import urllib.parse
from pathlib import Path

import pytest
from click.testing import CliRunner

from bastion.cli import cli
from bastion.config import load_config
from bastion.errors import BastionError
from bastion.store.backup import create_backup
from bastion.vault import Vault

from .conftest import FAST_KDF, make_home, new_env_key

SENTINEL = "LEAK-SENTINEL-7f3a9c2e81d64b05"


def _forms(value: str) -> list[bytes]:
    raw = value.encode()
    return [
        raw,
        value.encode("utf-16-le"),
        base64.b64encode(raw),
        urllib.parse.quote(value).encode(),
        raw.hex().encode(),
    ]


def test_sentinel_never_leaks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    home = tmp_path / "home"
    key = new_env_key()
    env = {
        "BASTION_HOME": str(home),
        "BASTION_VAULT_BACKEND": "encrypted-file",
        "BASTION_VAULT_KEY": key,
        "BASTION_VAULT_RULES": "WEBHOOK=https_url",
        **FAST_KDF,
    }
    make_home(home, BASTION_VAULT_BACKEND="encrypted-file")
    runner = CliRunner()
    outputs: list[str] = []
    errors: list[str] = []

    def run(*args: str, stdin: str | None = None) -> None:
        result = runner.invoke(cli, ["secrets", *args], input=stdin, env=env)
        outputs.append(result.output)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            errors.append(repr(result.exception))

    caplog.set_level(logging.DEBUG)
    # set (stdin), get (masked, JSON), list/status/audit, a refused value, audit hash.
    run("set", "SENTINEL", stdin=SENTINEL + "\n")
    run("set", "SENTINEL", "--scope", "bot:1", "--json", stdin=SENTINEL)
    run("get", "SENTINEL")
    run("get", "SENTINEL", "--json")
    run("list", "--json")
    run("status", "--json")
    run("set", "WEBHOOK", stdin=f"http://{SENTINEL}.example.com/hook")
    run("set", "WEBHOOK", "--json", stdin=f"http://{SENTINEL}.example.com/hook")
    run("audit", "hash", stdin=SENTINEL)
    # import: a .env outside the home.
    env_file = tmp_path / "proj" / ".env"
    env_file.parent.mkdir()
    env_file.write_text(f"OPENAI_API_KEY={SENTINEL}\n")
    run("import", str(env_file), "--json")
    run("audit", "--json")
    run("reconcile", "--json")

    cfg = load_config(home, env=env)
    with Vault.open(cfg, env={"BASTION_VAULT_KEY": key}) as vault:
        # inject (the supervisor's path), a wrong-version CAS, a tampered record's error.
        injected = vault.inject(["SENTINEL"])
        errors.append(repr(injected))
        errors.append(str(injected["SENTINEL"]))
        with pytest.raises(BastionError) as conflict:
            vault.set("SENTINEL", SENTINEL, expected_version=99)
        err = conflict.value
        errors.extend([err.message, err.hint, repr(err.details), json.dumps(err.to_dict())])
        vault.db.write(lambda tx: tx.execute("UPDATE vault_values SET version = 7"))
        with pytest.raises(BastionError) as tampered:
            vault.get("OPENAI_API_KEY")
        err = tampered.value
        errors.extend([err.message, err.hint, repr(err.details)])
        audit_rows = [repr(e) for e in vault.audit_entries(limit=1000)]
        # A backup of vault.db (what `bastion db backup` would copy) holds ciphertext only.
        create_backup(vault.db, cfg.backups_dir)

    assert env_file.read_text() == "OPENAI_API_KEY=secret:global/OPENAI_API_KEY\n"
    texts = outputs + errors + audit_rows + [caplog.text]
    for text in texts:
        assert SENTINEL not in text, text
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".db") and "backups" in p.parts for p in files)
    for path in files:
        data = path.read_bytes()
        for form in _forms(SENTINEL):
            assert form not in data, f"{path} holds the sentinel"
    # The only plaintext copy left is the import backup the user asked for, beside the file.
    [backup] = env_file.parent.glob(".env.bastion-backup-*")
    assert SENTINEL in backup.read_text()
    assert backup.stat().st_mode & 0o777 == 0o600
