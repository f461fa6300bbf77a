"""Version 2's API: one record per (space, key) with timestamps; concurrent writers of
different keys from several processes lose nothing; values never print."""

from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from bastion.config import Config, load_config
from bastion.errors import Conflict, KeychainUnavailable, VaultError
from bastion.vault import Secret
from examples.spaces.app import SpacesApp
from examples.spaces.secrets import SpaceSecrets, space_scope
from examples.spaces.tests import worker

PROCESSES = 4
KEYS_EACH = 60


@pytest.fixture
def app(cfg: Config, env: dict[str, str]) -> SpacesApp:
    app = SpacesApp.open(cfg, env=env)
    app.create_space("s1", "Space one")
    return app


def test_set_get_list_delete(app: SpacesApp) -> None:
    with app:
        first = app.secrets.set_secret("s1", "openai_api_key", "sk-one")
        app.secrets.set_secret("s1", "anthropic_api_key", "sk-ant")
        updated = app.secrets.set_secret("s1", "openai_api_key", "sk-two")
        assert updated.version == first.version + 1
        assert updated.created_at == first.created_at
        assert updated.updated_at >= first.updated_at
        got = app.secrets.get_secret("s1", "openai_api_key")
        assert got is not None
        assert got.reveal() == "sk-two"
        assert [r.secret_key for r in app.secrets.list_secrets("s1")] == [
            "anthropic_api_key",
            "openai_api_key",
        ]
        assert app.secrets.get_secret("s1", "missing") is None
        assert app.secrets.get_secret("other", "openai_api_key") is None  # spaces are separate
        assert app.secrets.delete_secret("s1", "anthropic_api_key") is True
        assert app.secrets.delete_secret("s1", "anthropic_api_key") is False
        assert list(app.secrets.get_all_secrets("s1")) == ["openai_api_key"]


def test_get_all_secrets_is_one_batch_not_a_get_per_key(
    app: SpacesApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seed's getAllSecrets of 20 keys reads them in one Vault.get_many batch (one pass
    over the encrypted file; one Secret Service call on the keychain), not 20 gets."""
    with app:
        for i in range(20):
            app.secrets.set_secret("s1", f"provider_{i:02d}_api_key", f"sk-{i:02d}")
        batches: list[str] = []
        real_get_many = app.vault.get_many

        def counting_get_many(*args: Any, **kwargs: Any) -> dict[str, Secret]:
            batches.append(str(kwargs.get("scope")))
            return real_get_many(*args, **kwargs)

        def no_single_get(*args: Any, **kwargs: Any) -> Secret:
            raise AssertionError("get_all_secrets read a key on its own")

        monkeypatch.setattr(app.vault, "get_many", counting_get_many)
        monkeypatch.setattr(app.vault, "get", no_single_get)
        got = app.secrets.get_all_secrets("s1")
        assert batches == ["space:s1"]
        assert {k: v.reveal() for k, v in got.items()} == {
            f"provider_{i:02d}_api_key": f"sk-{i:02d}" for i in range(20)
        }


def test_one_key_is_read_and_written_without_the_others(
    app: SpacesApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seed's "query/update specific secrets without loading all": a get decrypts one
    record's value, a set writes one record; the bundle read and rewrote every key."""
    with app:
        for i in range(20):
            app.secrets.set_secret("s1", f"k{i:02d}", f"v{i:02d}")
        backend = app.vault.backend
        read: list[str] = []
        written: list[str] = []
        real_read, real_write = backend.read_value, backend.write_value

        def read_value(ref: Any) -> str | None:
            read.append(ref.name)
            return real_read(ref)

        def write_value(tx: Any, ref: Any, value: str) -> None:
            written.append(ref.name)
            real_write(tx, ref, value)

        def no_batch(*args: Any) -> Any:
            raise AssertionError("a single get read a batch")

        monkeypatch.setattr(backend, "read_value", read_value)
        monkeypatch.setattr(backend, "write_value", write_value)
        monkeypatch.setattr(backend, "read_values", no_batch, raising=False)
        got = app.secrets.get_secret("s1", "k07")
        assert got is not None
        assert got.reveal() == "v07"
        assert read == ["k07"]
        before = {r.secret_key: r.version for r in app.secrets.list_secrets("s1")}
        app.secrets.set_secret("s1", "k07", "changed")
        assert written == ["k07"]
        after = {r.secret_key: r.version for r in app.secrets.list_secrets("s1")}
        assert {k for k in after if after[k] != before[k]} == {"k07"}


def test_compare_and_set_on_one_key(app: SpacesApp) -> None:
    with app:
        app.secrets.set_secret("s1", "k", "v1", expected_version=0)
        with pytest.raises(Conflict):
            app.secrets.set_secret("s1", "k", "other", expected_version=0)
        app.secrets.set_secret("s1", "k", "v2", expected_version=1)
        with pytest.raises(Conflict):
            app.secrets.set_secret("s1", "k", "stale", expected_version=1)
        got = app.secrets.get_secret("s1", "k")
        assert got is not None
        assert got.reveal() == "v2"


def test_bad_space_ids_are_refused_with_the_rule() -> None:
    assert space_scope("abc-1.x") == "space:abc-1.x"
    for bad in ("", "a/b", "../x", "a b", "-lead"):
        with pytest.raises(ValueError, match="space id"):
            space_scope(bad)


def test_values_do_not_print(app: SpacesApp, caplog: pytest.LogCaptureFixture) -> None:
    with app:
        app.secrets.set_secret("s1", "openai_api_key", "SENTINEL-print-4242")
        secret = app.secrets.get_all_secrets("s1")["openai_api_key"]
        assert isinstance(secret, Secret)
        logging.getLogger("spaces-test").warning("loaded %s %r", secret, secret)
        shown = f"{secret} {secret!r} {app.secrets.list_secrets('s1')!r}"
        assert "SENTINEL" not in shown
        assert "SENTINEL" not in caplog.text


def test_processes_writing_different_keys_lose_none(cfg: Config, env: dict[str, str]) -> None:
    SpacesApp.open(cfg, env=env).close()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(PROCESSES) as pool:
        counts = pool.starmap(
            worker.record_add_many,
            [(str(cfg.home), env, "s1", f"p{i}", KEYS_EACH) for i in range(PROCESSES)],
        )
    assert counts == [KEYS_EACH] * PROCESSES
    with SpacesApp.open(cfg, env=env) as app:
        records = app.secrets.list_secrets("s1")
        assert len(records) == PROCESSES * KEYS_EACH  # 0 lost
        assert all(r.version == 1 for r in records)  # none overwritten
        values = app.secrets.get_all_secrets("s1")
    expected = {
        f"p{i}_{n:04d}": f"p{i}-value-{n}" for i in range(PROCESSES) for n in range(KEYS_EACH)
    }
    assert {k: v.reveal() for k, v in values.items()} == expected


@pytest.mark.keychain
def test_per_record_secrets_on_the_os_keychain(tmp_path: Path) -> None:
    """The same records with the values in the real Secret Service (gnome-keyring)."""
    env = {"BASTION_VAULT_SERVICE": f"bastion-spaces-test-{tmp_path.name}"}
    cfg = load_config(tmp_path / "home", env=env)
    try:
        app = SpacesApp.open(cfg, env=env)
        app.secrets.set_secret("s1", "probe", "x")
    except (KeychainUnavailable, VaultError) as err:
        pytest.skip(f"no usable Secret Service: {err.message}")
    with app:
        secrets = SpaceSecrets(app.vault)
        secrets.set_secret("s1", "openai_api_key", "sk-kc-one")
        secrets.set_secret("s1", "anthropic_api_key", "sk-kc-two")
        assert {k: v.reveal() for k, v in secrets.get_all_secrets("s1").items()} == {
            "anthropic_api_key": "sk-kc-two",
            "openai_api_key": "sk-kc-one",
            "probe": "x",
        }
        assert app.vault.backend_info()["backend"] == "keychain"
        for key in ("openai_api_key", "anthropic_api_key", "probe"):
            assert secrets.delete_secret("s1", key)
        assert secrets.list_secrets("s1") == []
