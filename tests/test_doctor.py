"""``bastion doctor``: the report, flagged file modes, and a bundle with no secret in it."""

from __future__ import annotations

import io
import json
import os
import uuid
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from bastion.app import Home
from bastion.cli import cli
from bastion.config import Config, load_config
from bastion.doctor import run_doctor, write_bundle
from bastion.runfiles import read_token
from bastion.store.crypt import DatabaseKey
from tests.helpers import file_vault_env


def _healthy_home(tmp_path: Path, store_env: dict[str, str] | None = None) -> Config:
    cfg = load_config(tmp_path / "home", env=store_env or {})
    with Home.init(cfg) as home:
        home.backup()
    return cfg


@pytest.mark.encrypted_rerun
def test_report_covers_every_part_of_a_healthy_home(
    tmp_path: Path, store_env: dict[str, str], db_key: DatabaseKey | None
) -> None:
    cfg = _healthy_home(tmp_path, store_env)
    report = run_doctor(cfg)
    assert report["problems"] == []
    bastion = report["databases"]["bastion"]
    key_id = None if db_key is None else {"cipher": "aegis-256", "key_id": db_key.key_id}
    assert bastion["encryption"] == key_id
    assert bastion["posture"]["journal_mode"] == "WAL"
    assert bastion["posture"]["foreign_keys"] is True
    assert bastion["check"]["integrity"] == ["ok"]
    assert bastion["check"]["foreign_key_violation_count"] == 0
    assert "core" in bastion["migrations"]
    assert report["versions"]["sqlite"].startswith("3.")
    assert report["backups"]["count"] >= 1
    assert report["disk"]["free_bytes"] > 0
    assert report["services"]["daemon"]["running"] is False
    paths = {e["path"] for e in report["files"]["entries"]}
    assert "bastion.db" in paths
    assert "run/token" in paths


def test_the_report_says_what_contains_a_service_here_and_leaves_no_cgroup(
    tmp_path: Path,
) -> None:
    """Issue 22 §5: doctor names what contains services on this machine: a cgroup v2 of
    their own where this process's cgroup is writable (here: Linux, cgroup2 writable as
    root), else the process group and the shim with the reason; it makes no cgroup to
    find out. ``[supervisor] cgroups = "off"`` is said as such."""
    from bastion.supervisor import _platform as plat

    cfg = _healthy_home(tmp_path)
    found = plat.discover_cgroups(plat.home_tag(cfg.db_path), keep=False)
    said = run_doctor(cfg, full_check=False)["services"]["containment"]
    assert said == found.describe()
    if found.root is not None:
        assert said.startswith("services contained by cgroup v2 (")
        assert not found.root.exists()  # asked, not made
    else:
        assert said.endswith("cgroup v2 not used: " + found.reason)
    out = CliRunner().invoke(cli, ["--home", str(cfg.home), "doctor", "--quick"])
    assert said in out.output
    off = load_config(cfg.home, env={"BASTION_SUPERVISOR_CGROUPS": "off"})
    said_off = run_doctor(off, full_check=False)["services"]["containment"]
    assert said_off.endswith("cgroup v2 not used: [supervisor] cgroups = 'off'")


def test_loose_file_modes_and_foreign_key_violations_are_flagged(tmp_path: Path) -> None:
    cfg = _healthy_home(tmp_path)
    os.chmod(cfg.db_path, 0o644)
    os.chmod(cfg.backups_dir, 0o755)
    with Home.open(cfg) as home:
        # An orphan, written with enforcement off (outside a transaction, where the pragma
        # takes effect), as an older app version or a manual edit would leave it.
        home.db.run_outside_transaction(
            lambda tx: tx.script(
                "CREATE TABLE parent(id INTEGER PRIMARY KEY);"
                "CREATE TABLE child(id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent(id));"
                "PRAGMA foreign_keys = OFF;"
                "INSERT INTO child(p) VALUES (42);"
                "PRAGMA foreign_keys = ON;"
            )
        )
    report = run_doctor(cfg)
    text = "\n".join(report["problems"])
    assert f"{cfg.db_path}: mode 0644, expected 0600" in text
    assert f"{cfg.backups_dir}: mode 0755, expected 0700" in text
    assert "1 foreign key violations" in text
    assert report["databases"]["bastion"]["check"]["foreign_key_violations"][0]["table"] == "child"


def test_a_corrupt_database_is_reported_not_opened(tmp_path: Path) -> None:
    cfg = _healthy_home(tmp_path)
    cfg.db_path.write_bytes(b"not sqlite at all" * 10)
    report = run_doctor(cfg)
    assert report["databases"]["bastion"]["open_check"]["kind"] == "not_a_database"
    assert any("not an SQLite database" in p for p in report["problems"])
    assert cfg.db_path.read_bytes() == b"not sqlite at all" * 10


@pytest.mark.parametrize("backend", ["encrypted-file"])
def test_bundle_holds_no_secret_value_and_no_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    from bastion.vault.crypto import encode_key, new_key

    key = encode_key(new_key())
    monkeypatch.setenv("BASTION_VAULT_KEY", key)
    sentinel = f"sentinel-{uuid.uuid4().hex}"
    cfg = load_config(tmp_path / "home", env={"BASTION_VAULT_BACKEND": backend})
    with Home.init(cfg) as home:
        home.vault.set("OPENAI_API_KEY", sentinel)
        home.backup()
    token = read_token(cfg.run_dir / "token")
    # A file whose *name* is the token: the file listing would carry it without the scrub.
    leak = cfg.services_dir / f"{token}.toml"
    leak.write_text("")
    os.chmod(leak, 0o600)

    report = run_doctor(cfg)
    assert report["vault"]["secrets_indexed"] == 1
    active = report["vault"]["active"]
    assert active["backend"] == "encrypted-file"
    assert active["available"] is True
    assert active["why"]
    bundle = tmp_path / "bundle.zip"
    info = write_bundle(cfg, report, bundle)
    assert info["redactions"] >= 2  # the file listing and the services section
    raw = bundle.read_bytes()
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    assert set(members) == {"doctor.json", "files.txt", "config.json"}
    everything = raw + b"".join(members.values())
    for secret in (sentinel, token, key):
        assert secret.encode() not in everything
    assert b"[REDACTED].toml" in members["files.txt"]
    assert json.loads(members["doctor.json"])["home"] == str(cfg.home)
    assert oct(bundle.stat().st_mode & 0o777) == "0o600"


def test_cli_doctor_exit_codes_and_bundle(tmp_path: Path) -> None:
    cfg = _healthy_home(tmp_path)
    runner = CliRunner()
    ok = runner.invoke(cli, ["--home", str(cfg.home), "doctor", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["problems"] == []
    os.chmod(cfg.db_path, 0o666)
    bad = runner.invoke(
        cli, ["--home", str(cfg.home), "doctor", "--bundle", str(tmp_path / "b.zip")]
    )
    assert bad.exit_code == 1
    assert "expected 0600" in bad.output
    assert "bundle:" in bad.output
    assert (tmp_path / "b.zip").exists()


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[api\nport = 1\n", "is not valid TOML"),
        ("[api]\nport = 'any'\n", "[api] port: 'any' is not a whole number"),
        ("[apii]\n", "unknown section [apii]"),
    ],
)
def test_a_bastion_toml_that_does_not_load_is_a_problem_and_the_rest_is_checked(
    tmp_path: Path, text: str, said: str
) -> None:
    # Doctor stopped at the file's error: the one command that checks a home told nothing
    # else about it. The file is the first problem; every other part is still reported.
    cfg = _healthy_home(tmp_path)
    (cfg.home / "bastion.toml").write_text(text)
    result = CliRunner().invoke(cli, ["--home", str(cfg.home), "doctor", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert said in report["problems"][0]
    assert report["problems"][0].count("`bastion config rollback ID`") == 1
    assert len(report["problems"]) == 1
    assert report["config"]["problem"]["code"] == "config_invalid"
    assert report["databases"]["bastion"]["check"]["integrity"] == ["ok"]
    assert report["backups"]["count"] >= 1


def test_backups_of_both_databases_hold_no_plaintext_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.vault.crypto import encode_key, new_key

    monkeypatch.setenv("BASTION_VAULT_KEY", encode_key(new_key()))
    sentinel = f"sentinel-{uuid.uuid4().hex}"
    cfg = load_config(tmp_path / "home", env={"BASTION_VAULT_BACKEND": "encrypted-file"})
    with Home.init(cfg) as home:
        home.vault.set("DB_PASSWORD", sentinel)
    runner = CliRunner()
    for db in ("bastion", "vault"):
        result = runner.invoke(cli, ["--home", str(cfg.home), "db", "backup", "--db", db, "--json"])
        assert result.exit_code == 0, result.output
        path = Path(json.loads(result.stdout)["path"])
        assert sentinel.encode() not in path.read_bytes()
        assert sentinel.encode() not in path.with_name(path.name + ".json").read_bytes()
    assert len(list(cfg.backups_dir.glob("vault-*.db"))) == 1


def test_hand_written_config_files_are_warnings_and_fix_tightens_them(tmp_path: Path) -> None:
    """A home made the README's way: `bastion init`, then bastion.toml and services/*.toml
    written with an editor (0644 under the usual umask)."""
    home = tmp_path / "home"

    def bastion(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["--home", str(home), *args])
        return result.exit_code, result.output

    assert bastion("init")[0] == 0
    toml = home / "bastion.toml"
    spec = home / "services" / "agent.toml"
    toml.write_text('[vault]\nbackend = "encrypted-file"\n')
    spec.write_text('argv = ["/bin/true"]\n')
    for path in (toml, spec):
        os.chmod(path, 0o644)
    assert bastion("db", "backup")[0] == 0

    code, out = bastion("doctor", "--quick", "--json")
    report = json.loads(out)
    assert code == 0, report["problems"]
    assert sorted(w.split(":")[0] for w in report["warnings"]) == sorted([str(toml), str(spec)])
    assert "bastion doctor --fix" in report["warnings"][0]

    os.chmod(spec, 0o664)  # writable by the group: anyone in it could change the argv
    code, out = bastion("doctor", "--quick", "--json")
    assert code == 1
    assert any(p.startswith(f"{spec}: mode 0664") for p in json.loads(out)["problems"])

    code, out = bastion("doctor", "--quick", "--fix")
    assert code == 0, out
    assert f"fixed:     {spec}: 0664 -> 0600" in out
    assert "warnings" not in out
    for path in (toml, spec):
        assert path.stat().st_mode & 0o777 == 0o600


def test_doctor_reports_the_age_of_the_newest_verified_backup_of_each_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.maintenance import Maintenance
    from bastion.vault.crypto import encode_key, new_key

    monkeypatch.setenv("BASTION_VAULT_KEY", encode_key(new_key()))
    cfg = load_config(tmp_path / "home", env={"BASTION_VAULT_BACKEND": "encrypted-file"})
    with Home.init(cfg) as home:
        home.vault.set("API_KEY", "y" * 20)
    report = run_doctor(cfg)
    for name in ("bastion", "vault"):
        assert report["databases"][name]["newest_verified_backup"] is None
        assert any(p.startswith(f"{name}: no verified backup") for p in report["problems"])

    with Home.open(cfg) as home:
        maintenance = Maintenance(home)
        maintenance.run_now("backup")
        maintenance.run_now("backup-vault")
        home.vault.set("OTHER", "z" * 20)
        maintenance.run_now("backup-vault")  # a newer vault backup, about to be damaged
    newest_vault = max(cfg.backups_dir.glob("vault-*.db"))
    data = bytearray(newest_vault.read_bytes())
    data[-100] ^= 0xFF  # same size: only a deep check (SHA-256) sees it
    newest_vault.write_bytes(bytes(data))

    report = run_doctor(cfg)
    assert not any("no verified backup" in p for p in report["problems"])
    for name in ("bastion", "vault"):
        newest = report["databases"][name]["newest_verified_backup"]
        assert newest["deep_verified"] is True
        assert Path(newest["path"]).name.startswith(f"{name}-")
        assert 0 <= newest["age_s"] < 3600
    vault_newest = report["databases"]["vault"]["newest_verified_backup"]
    assert Path(vault_newest["path"]) != newest_vault  # the damaged one is not counted
    assert vault_newest["changed_since"] is True  # OTHER came after that backup

    human = CliRunner().invoke(cli, ["--home", str(cfg.home), "doctor"])
    assert human.output.count("backup: newest verified") == 2, human.output


def test_a_wrong_database_key_is_a_key_problem_not_damage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64

    from tests.conftest import encrypted_store_env

    monkeypatch.setenv("BASTION_DB_KEY", base64.b64encode(os.urandom(32)).decode())
    cfg = _healthy_home(tmp_path, encrypted_store_env())
    monkeypatch.setenv("BASTION_DB_KEY", base64.b64encode(os.urandom(32)).decode())
    report = run_doctor(cfg)
    bastion = report["databases"]["bastion"]
    assert bastion["open_check"]["kind"] == "key"
    assert "key does not fit" in bastion["problem"]
    assert "damaged" not in bastion["problem"]
    assert report["backups"]["damaged"] == []
    assert len(report["backups"]["other_key"]) == report["backups"]["count"] >= 1


@pytest.mark.parametrize("stored", [1, 0], ids=["secrets-stored", "none-stored"])
def test_a_vault_that_cannot_open_is_a_problem_only_when_secrets_are_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stored: int
) -> None:
    """``Vault.open`` refusing (here a ``vault.rules`` entry naming no rule: every `secrets`
    command exits 78) with secrets on record stops the services that use them: a problem,
    with the reason and the fix. The report had no count of them on that path, so it was
    always a warning and doctor exited 0. With none stored it stays a warning."""
    for name, value in file_vault_env().items():
        monkeypatch.setenv(name, value)
    cfg = load_config(tmp_path / "home")
    with Home.init(cfg) as home:
        assert home.vault.list() == []  # vault.db exists
        for i in range(stored):
            home.vault.set(f"TOKEN_{i}", "doctor-value-" + "z" * 12)
    monkeypatch.setenv("BASTION_VAULT_RULES", "TOKEN_0=nosuchrule")
    report = run_doctor(load_config(cfg.home))
    vault_lines = [p for p in report["problems"] + report["warnings"] if "unavailable" in p]
    (said,) = vault_lines
    assert said in (report["problems"] if stored else report["warnings"])
    assert report["vault"]["secrets_indexed"] == stored  # from vault.db alone
    assert said.startswith("vault: unavailable: vault.rules: ")
    assert "unknown rule 'nosuchrule'" in said
    assert "Fix the named key in bastion.toml" in said  # the refusal's hint
    assert ("no secret is stored yet" in said) is (not stored)
    assert "doctor-value-" not in json.dumps(report)
