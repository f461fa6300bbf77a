"""The seed's secrets IPC commands against a real ``bastion serve`` on loopback:
names-only listing, reveal, set, delete, and the stale-entry cleanup on ``get_secrets``."""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bastion.app import Home
from bastion.config import Config, load_config
from bastion.errors import KeychainUnavailable, ReconcileRefused, VaultError
from bastion.vault import Vault
from examples.agent_desktop.daemon import Daemon
from examples.agent_desktop.ipc import SCOPE, SecretsIpc
from examples.agent_desktop.tests.conftest import SENTINEL

pytestmark = pytest.mark.posix


def test_secrets_commands_behave_as_the_seed(cfg: Config, tmp_path: Path) -> None:
    Home.init(cfg).close()
    log = tmp_path / "daemon.log"
    with Daemon.spawn(cfg, log_path=log) as daemon:
        ipc = SecretsIpc(daemon.client, cfg)
        assert ipc.get_secrets() == []
        ipc.set_secret("openai_api_key", SENTINEL)
        ipc.set_secret("anthropic_api_key", "sk-ant-other")
        assert ipc.get_secrets() == ["anthropic_api_key", "openai_api_key"]  # names only
        raw = daemon.client.get("/v1/secrets", scope=SCOPE)
        assert SENTINEL not in json.dumps(raw)  # the list route carries no value
        assert ipc.get_secret("openai_api_key") == SENTINEL  # the audited reveal
        assert ipc.get_secret("missing_key") is None
        ipc.set_secret("openai_api_key", "sk-rotated")  # replace: last writer wins
        assert ipc.get_secret("openai_api_key") == "sk-rotated"
        assert ipc.delete_secret("openai_api_key") is True
        assert ipc.delete_secret("openai_api_key") is False
        assert ipc.get_secrets() == ["anthropic_api_key"]
    assert daemon.returncode == 0
    # the daemon's own log never saw a value
    assert SENTINEL not in log.read_text(encoding="utf-8")


def test_the_key_list_survives_an_app_restart(cfg: Config) -> None:
    """The seed's persistent known-keys list: keys set in one session are listed by the next
    (a new daemon process, a new client), read after the restart."""
    Home.init(cfg).close()
    with Daemon.spawn(cfg) as first:
        ipc = SecretsIpc(first.client, cfg)
        ipc.set_secret("openai_api_key", SENTINEL)
        ipc.set_secret("github_token", "ghp-kept")
        before_pid = first.pid
    assert first.returncode == 0
    with Daemon.spawn(cfg) as second:  # the app started again
        assert second.pid != before_pid
        ipc = SecretsIpc(second.client, cfg)
        assert ipc.get_secrets() == ["github_token", "openai_api_key"]
        assert ipc.get_secret("openai_api_key") == SENTINEL
    assert second.returncode == 0


def test_concurrent_ipc_calls_lose_nothing(cfg: Config) -> None:
    """The seed wrapped its state in a Mutex; here 8 concurrent callers (the UI's parallel
    IPC calls) each set their own keys through the daemon: every key lands, once."""
    Home.init(cfg).close()
    with Daemon.spawn(cfg) as daemon:
        ipc = SecretsIpc(daemon.client, cfg, reconcile=False)

        def writer(worker: int) -> None:
            for i in range(15):
                ipc.set_secret(f"key_{worker}_{i:02d}", f"value-{worker}-{i}")

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(writer, range(8)))
        names = ipc.get_secrets()
        assert names == sorted(f"key_{w}_{i:02d}" for w in range(8) for i in range(15))
        assert ipc.get_secret("key_7_14") == "value-7-14"
        versions = {
            m["version"] for m in daemon.client.get("/v1/secrets", scope=SCOPE, limit=500)["items"]
        }
        assert versions == {1}
    assert daemon.returncode == 0


@pytest.mark.keychain
def test_get_secrets_drops_an_entry_deleted_outside_the_app(tmp_path: Path) -> None:
    """The seed's stale-key cleanup: an item deleted in the keychain behind the app's back
    (here with libsecret's ``secret-tool``) disappears from the next ``get_secrets``."""
    service = f"aios-test-{tmp_path.name}"
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    # In bastion.toml, so the daemon, the CLI and this test all use the same keychain service.
    (home / "bastion.toml").write_text(
        f'[vault]\nbackend = "keychain"\nservice = "{service}"\n', encoding="utf-8"
    )
    cfg = load_config(home, env={})
    Home.init(cfg).close()
    try:
        with Vault.open(cfg) as probe:
            probe.set("probe", "x", scope=SCOPE)
            probe.delete("probe", scope=SCOPE)
    except (KeychainUnavailable, VaultError) as err:
        pytest.skip(f"no usable Secret Service: {err.message}")
    with Daemon.spawn(cfg, env=_without_vault_overrides()) as daemon:
        ipc = SecretsIpc(daemon.client, cfg)
        ipc.set_secret("github_token", "ghp-keep")
        ipc.set_secret("search_api_key", "sk-will-vanish")
        subprocess.run(
            ["secret-tool", "clear", "service", service, "username", f"{SCOPE}/search_api_key"],
            check=True,
            timeout=30,
        )
        # without the reconcile, the index still lists the vanished key...
        stale = SecretsIpc(daemon.client, cfg, reconcile=False).get_secrets()
        assert stale == ["github_token", "search_api_key"]
        # ...get_secrets cleans it up, as the seed's did
        assert ipc.get_secrets() == ["github_token"]
        assert ipc.get_secret("github_token") == "ghp-keep"
        assert ipc.delete_secret("github_token") is True
    assert daemon.returncode == 0


@pytest.mark.keychain
def test_get_secrets_cleans_up_when_every_key_was_deleted_outside_the_app(
    tmp_path: Path,
) -> None:
    """Every known key deleted in the keychain behind the app's back: bastion's reconcile
    refuses to drop them all by default; get_secrets says the user did it (allow_drop_all)
    and the list follows, to empty, instead of failing."""
    service = f"aios-all-{tmp_path.name}"
    cfg = _keychain_home(tmp_path, service)
    with Daemon.spawn(cfg, env=_without_vault_overrides()) as daemon:
        ipc = SecretsIpc(daemon.client, cfg)
        for key in ("github_token", "search_api_key", "openai_api_key"):
            ipc.set_secret(key, f"value-of-{key}")
        subprocess.run(["secret-tool", "clear", "service", service], check=True, timeout=30)
        with pytest.raises(ReconcileRefused):  # bastion's guard, without the app's word
            daemon.client.post("/v1/secrets/reconcile", {"fix": True})
        assert SecretsIpc(daemon.client, cfg, reconcile=False).get_secrets() == [
            "github_token",
            "openai_api_key",
            "search_api_key",
        ]
        assert ipc.get_secrets() == []  # cleaned up, as the seed's get_secrets did
        ipc.set_secret("github_token", "ghp-new")  # and the app goes on
        assert ipc.get_secrets() == ["github_token"]
    assert daemon.returncode == 0


def _keychain_home(tmp_path: Path, service: str) -> Config:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "bastion.toml").write_text(
        f'[vault]\nbackend = "keychain"\nservice = "{service}"\n', encoding="utf-8"
    )
    cfg = load_config(home, env={})
    Home.init(cfg).close()
    try:
        with Vault.open(cfg) as probe:
            probe.set("probe", "x", scope=SCOPE)
            probe.delete("probe", scope=SCOPE)
    except (KeychainUnavailable, VaultError) as err:
        pytest.skip(f"no usable Secret Service: {err.message}")
    return cfg


def _without_vault_overrides() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BASTION_VAULT_")}
