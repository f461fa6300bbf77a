"""Import and scrub of plaintext configs, idempotence, and the bundled -> per-record migration
(including a migration killed mid-way and re-run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.errors import ImportFailed
from bastion.vault import Vault
from bastion.vault.importer import (
    import_file,
    looks_secret,
    migrate_bundle,
    migrate_bundled_json,
    parse_env,
)
from bastion.vault.rules import HttpsUrl
from bastion.vault.secret import REFERENCE_PREFIX

from ..helpers import wait_until

ENV_TEXT = """\
# app settings
export OPENAI_API_KEY=sk-proj-abcdef1234567890
ANTHROPIC_API_KEY="sk-ant-quoted \\"value\\""   # the main model
PORT=8080
DEBUG=true
DATABASE_URL=postgres://app:hunter2pass@db.internal:5432/app
GITHUB_TOKEN='ghp_abcdefghijklmnopqrstuvwxyz0123'
EMPTY=
"""


def _backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".bastion-backup-*"))


def test_env_import_scrubs_and_keeps_formatting(file_vault: Vault, tmp_path: Path) -> None:
    env = tmp_path / "app" / ".env"
    env.parent.mkdir()
    env.write_text(ENV_TEXT)
    report = import_file(file_vault, env)
    assert report.format == "env"
    assert report.rewritten
    imported = {i.name: i.action for i in report.items}
    assert imported == {
        "OPENAI_API_KEY": "set",
        "ANTHROPIC_API_KEY": "set",
        "DATABASE_URL": "set",
        "GITHUB_TOKEN": "set",
    }
    assert env.read_text() == (
        "# app settings\n"
        "export OPENAI_API_KEY=secret:global/OPENAI_API_KEY\n"
        'ANTHROPIC_API_KEY="secret:global/ANTHROPIC_API_KEY"   # the main model\n'
        "PORT=8080\n"
        "DEBUG=true\n"
        "DATABASE_URL=secret:global/DATABASE_URL\n"
        "GITHUB_TOKEN='secret:global/GITHUB_TOKEN'\n"
        "EMPTY=\n"
    )
    assert file_vault.get("ANTHROPIC_API_KEY").reveal() == 'sk-ant-quoted "value"'
    assert file_vault.get("DATABASE_URL").reveal().endswith("@db.internal:5432/app")
    [backup] = _backups(env)
    assert backup.read_text() == ENV_TEXT
    assert backup.stat().st_mode & 0o777 == 0o600

    # Idempotent: a second run finds references only and changes nothing.
    before = env.read_bytes()
    again = import_file(file_vault, env)
    assert not again.rewritten
    assert {i.action for i in again.items} == {"reference"}
    assert env.read_bytes() == before
    assert len(_backups(env)) == 1
    assert all(m.version == 1 for m in file_vault.list())


CLAUDE_DESKTOP = {
    "mcpServers": {
        "github": {
            "command": "npx",
            "args": ["-y", "@modelcontextprotocol/server-github"],
            "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_1234567890abcdefghijklmnopqrstuv"},
        },
        "slack": {
            "command": "npx",
            "env": {"SLACK_BOT_TOKEN": "xoxb-1111-2222-abcdefghij", "SLACK_TEAM_ID": "T01234"},
        },
        "fs": {"command": "npx", "args": ["/home/me"]},
    }
}


def test_mcp_config_import(file_vault: Vault, tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text(json.dumps(CLAUDE_DESKTOP, indent=2) + "\n")
    report = import_file(file_vault, path, scope="space:desk")
    assert report.format == "mcp"
    data = json.loads(path.read_text())
    assert data["mcpServers"]["github"]["env"]["GITHUB_PERSONAL_ACCESS_TOKEN"] == (
        "secret:space:desk/github.GITHUB_PERSONAL_ACCESS_TOKEN"
    )
    assert data["mcpServers"]["slack"]["env"]["SLACK_BOT_TOKEN"] == (
        "secret:space:desk/slack.SLACK_BOT_TOKEN"
    )
    assert data["mcpServers"]["slack"]["env"]["SLACK_TEAM_ID"] == "T01234"  # not a secret
    assert data["mcpServers"]["fs"] == CLAUDE_DESKTOP["mcpServers"]["fs"]
    assert path.read_text().startswith('{\n  "mcpServers"')  # indentation kept
    secret = file_vault.resolve("secret:space:desk/slack.SLACK_BOT_TOKEN")
    assert secret.reveal() == "xoxb-1111-2222-abcdefghij"
    assert not import_file(file_vault, path, scope="space:desk").rewritten


def test_vscode_mcp_json_shape(file_vault: Vault, tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(
        json.dumps({"servers": {"brave": {"env": {"BRAVE_API_KEY": "BSA-abc123xyz987"}}}})
    )
    import_file(file_vault, path)
    assert json.loads(path.read_text())["servers"]["brave"]["env"]["BRAVE_API_KEY"] == (
        "secret:global/brave.BRAVE_API_KEY"
    )


def test_generic_json_by_name_prefix_and_entropy(file_vault: Vault, tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    config = {
        "elevenlabs": {"api_key": "el-not-a-known-prefix", "voice": "Rachel"},
        "n8n_webhook_url": "https://n8n.example.com/webhook/abc",
        "providers": [{"name": "google", "key": "AIzaSyA1234567890abcdefghijklmnopqrs"}],
        "unnamed": "Zq8vX2mN4pL7rT1wY5kH9cB3jF6dS0aE",
        "theme": "dark",
        "volume": 7,
        "auth_enabled": "true",
    }
    path.write_text(json.dumps(config, indent=4))
    report = import_file(file_vault, path)
    names = {i.name for i in report.items}
    assert names == {"elevenlabs.api_key", "n8n_webhook_url", "providers.0.key", "unnamed"}
    data = json.loads(path.read_text())
    assert data["theme"] == "dark"
    assert data["volume"] == 7
    assert data["auth_enabled"] == "true"
    assert data["providers"][0]["key"] == "secret:global/providers.0.key"
    assert not path.read_text().endswith("\n")  # the original had no final newline


def test_explicit_field_mapping_for_app_auto_migration(file_vault: Vault, tmp_path: Path) -> None:
    # Seed 001: known plaintext fields migrate to known secret names on startup.
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"api_key": "x", "webhook_url": "https://h.example/w"}))
    import_file(
        file_vault, path, names={"api_key": "ELEVENLABS_API_KEY", "webhook_url": "N8N_WEBHOOK_URL"}
    )
    assert file_vault.status(["ELEVENLABS_API_KEY", "N8N_WEBHOOK_URL"])["secrets"] == {
        "ELEVENLABS_API_KEY": pytest.approx(file_vault.status()["secrets"]["ELEVENLABS_API_KEY"]),
        "N8N_WEBHOOK_URL": pytest.approx(file_vault.status()["secrets"]["N8N_WEBHOOK_URL"]),
    }
    assert file_vault.get("ELEVENLABS_API_KEY").reveal() == "x"


def test_dry_run_changes_nothing(file_vault: Vault, tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(ENV_TEXT)
    report = import_file(file_vault, env, dry_run=True)
    assert {i.action for i in report.items} == {"would-set"}
    assert env.read_text() == ENV_TEXT
    assert file_vault.list() == []
    assert _backups(env) == []


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        (
            "mcp.json",
            '{"mcpServers": {"a": {"env": {"API_KEY": "sk-proj-Zx8Qw2Lm4Np6Rt8Vb0Cd"}}},}\n',
            "line 1, column 76",
        ),
        (
            "settings",
            '{\n  // the key\n  "api_token": "sk-proj-Zx8Qw2Lm4Np6Rt8Vb0Cd"\n}\n',
            "line 2, column 3",
        ),
    ],
    ids=["trailing-comma", "comment-no-suffix"],
)
def test_json_that_does_not_parse_is_refused_not_read_as_env(
    file_vault: Vault, tmp_path: Path, name: str, text: str, where: str
) -> None:
    """A .json file with a trailing comma (or a JSONC comment) was read as .env lines: none
    held KEY=value, so "nothing to import", and the plaintext key stayed in the file."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ImportFailed) as info:
        import_file(file_vault, path)
    assert info.value.message.startswith(f"{path} is not valid JSON: ")
    assert f"({where}); nothing was imported" in info.value.message
    assert "Zx8Qw2" not in info.value.message + info.value.hint
    assert path.read_text() == text
    assert file_vault.list() == []
    # A file that does not look like JSON is still read as .env lines.
    plain = tmp_path / "settings.txt"
    plain.write_text("OPENAI_API_KEY=sk-good-1234567890\n")
    assert [i.name for i in import_file(file_vault, plain, dry_run=True).items] == [
        "OPENAI_API_KEY"
    ]


def test_rule_violation_imports_nothing(file_vault: Vault, tmp_path: Path) -> None:
    file_vault.rules.add("N8N_WEBHOOK_URL", HttpsUrl())
    env = tmp_path / ".env"
    text = "OPENAI_API_KEY=sk-good-1234567890\nN8N_WEBHOOK_URL=http://n8n.example.com/hook\n"
    env.write_text(text)
    with pytest.raises(ImportFailed) as info:
        import_file(file_vault, env)
    assert "N8N_WEBHOOK_URL" in info.value.message
    assert "n8n.example.com" not in info.value.message
    assert env.read_text() == text
    assert file_vault.list() == []


def test_crash_between_vault_and_rewrite_is_resumed(file_vault: Vault, tmp_path: Path) -> None:
    """Values reach the vault first; if the process died before the rewrite, the re-run sets
    nothing again (same fingerprints) and finishes the scrub."""
    env = tmp_path / ".env"
    env.write_text(ENV_TEXT)
    for name, value in [("OPENAI_API_KEY", "sk-proj-abcdef1234567890")]:
        file_vault.set(name, value, actor="import")
    report = import_file(file_vault, env)
    actions = {i.name: i.action for i in report.items}
    assert actions["OPENAI_API_KEY"] == "unchanged"
    assert file_vault.meta("OPENAI_API_KEY").version == 1
    assert "sk-proj" not in env.read_text()


def test_looks_secret_examples() -> None:
    assert looks_secret("OPENAI_API_KEY", "anything")
    assert looks_secret("x", "sk-abc")
    assert looks_secret("x", "amqp://user:pw@rabbit/")
    assert not looks_secret("PORT", "8080")
    assert not looks_secret("TOKEN_ENABLED", "true")
    assert not looks_secret("path", "/usr/local/share/some/long/directory/name")
    assert not looks_secret("greeting", "hello world this is a long sentence")
    assert not looks_secret("API_KEY", "secret:global/API_KEY")


_env_values = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\n\r\x00\"'\\#"),
    min_size=1,
    max_size=40,
).filter(lambda v: v == v.strip())


@settings(max_examples=100, deadline=None)
@given(key=st.from_regex(r"[A-Z][A-Z0-9_]{0,15}", fullmatch=True), value=_env_values)
def test_parse_env_round_trips_each_quote_style(key: str, value: str) -> None:
    for line in (f"{key}={value}\n", f'{key}="{value}"\n', f"export {key}='{value}'  # c\n"):
        [entry] = parse_env(line)
        assert entry.key == key
        assert entry.value == value
        assert entry.prefix + entry.value + entry.suffix == line


BUNDLE_CHILD = """
import json, sys
from bastion.config import load_config
from bastion.vault import Vault
from bastion.vault.importer import migrate_bundled_json
cfg = load_config(sys.argv[1], env={"BASTION_VAULT_BACKEND": "encrypted-file"})
with Vault.open(cfg, env={"BASTION_VAULT_KEY": sys.argv[3]}) as vault:
    print(json.dumps(migrate_bundled_json(vault, sys.argv[2], scope="space:abc")))
"""


@pytest.mark.posix
def test_interrupted_bundle_migration_finishes_exactly_once(
    file_vault: Vault, tmp_path: Path, env_key: str
) -> None:
    bundle = {f"provider_{i}_api_key": f"sk-bundle-{i:04d}" for i in range(400)}
    record = tmp_path / "space-abc.json"
    record.write_text(json.dumps({"id": "abc", "name": "Space", "secrets": bundle}, indent=2))
    home = str(file_vault.config.home)
    with subprocess.Popen(
        [sys.executable, "-c", BUNDLE_CHILD, home, str(record), env_key],
        stdout=subprocess.DEVNULL,
    ) as child:
        try:
            wait_until(
                lambda: len(file_vault.list("space:abc")) >= 20 or child.poll() is not None,
                timeout=60,
                what="the child to migrate some keys",
            )
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait(timeout=30)
    partial = len(file_vault.list("space:abc"))
    assert partial >= 20
    if child.returncode == -signal.SIGKILL:
        assert "secrets" in json.loads(record.read_text())  # the bundle is cleared only at the end

    result = migrate_bundled_json(file_vault, record, scope="space:abc")
    rows = file_vault.list("space:abc")
    assert len(rows) == 400
    assert all(m.version == 1 for m in rows), "a key was written twice"
    assert result["written"] + result["unchanged"] in (0, 400)
    for i in (0, 199, 399):
        assert file_vault.get(f"provider_{i}_api_key", scope="space:abc").reveal() == (
            f"sk-bundle-{i:04d}"
        )
    data = json.loads(record.read_text())
    assert "secrets" not in data
    assert data["name"] == "Space"
    assert migrate_bundled_json(file_vault, record, scope="space:abc")["keys"] == 0


_keys = st.from_regex(r"[A-Z][A-Z0-9_]{0,11}_(API_KEY|TOKEN|SECRET)", fullmatch=True)


# One vault for all examples on purpose: each example uses its own folder and scope.
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    entries=st.dictionaries(
        _keys,
        # A value that is already a reference ("secret:...") is left as it is, by design.
        _env_values.filter(lambda v: not v.startswith(REFERENCE_PREFIX)).filter(
            lambda v: (
                v.lower()
                not in {
                    "true",
                    "false",
                    "yes",
                    "no",
                    "on",
                    "off",
                    "null",
                    "none",
                    "enabled",
                    "disabled",
                }
            )
        ),
        min_size=1,
        max_size=6,
    ),
    quote=st.sampled_from(["", "'", '"']),
)
def test_import_is_lossless_and_idempotent(
    file_vault: Vault, tmp_path_factory: pytest.TempPathFactory, entries: dict[str, str], quote: str
) -> None:
    folder = tmp_path_factory.mktemp("env")
    scope = f"space:{folder.name}"
    env = folder / ".env"
    text = "# generated\n" + "".join(f"{k}={quote}{v}{quote}\n" for k, v in entries.items())
    env.write_text(text)
    first = import_file(file_vault, env, scope=scope)
    assert first.rewritten
    for key, value in entries.items():
        assert file_vault.get(key, scope=scope).reveal() == value
    scrubbed = env.read_bytes()
    for value in entries.values():
        assert f"={quote}{value}{quote}\n".encode() not in scrubbed
    second = import_file(file_vault, env, scope=scope)
    assert not second.rewritten
    assert env.read_bytes() == scrubbed
    assert all(m.version == 1 for m in file_vault.list(scope))


def test_bundle_migration_reports_each_durable_key_in_order(file_vault: Vault) -> None:
    bundle = {"zeta_key": "sk-z", "alpha_key": "sk-a", "mid_key": "sk-m"}
    seen: list[tuple[str, bool, bool]] = []
    counts = migrate_bundle(
        file_vault,
        bundle,
        scope="space:order",
        on_key=lambda name, written: seen.append(
            (name, written, file_vault.exists(name, scope="space:order"))
        ),
    )
    assert counts == {"keys": 3, "written": 3, "unchanged": 0}
    # sorted, each already stored when reported (a crash test's kill point is after it)
    assert seen == [("alpha_key", True, True), ("mid_key", True, True), ("zeta_key", True, True)]
    seen.clear()
    migrate_bundle(
        file_vault,
        bundle,
        scope="space:order",
        on_key=lambda name, written: seen.append((name, written, True)),
    )
    assert [w for _, w, _ in seen] == [False, False, False]  # a re-run writes nothing
