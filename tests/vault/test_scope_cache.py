"""``ScopeCache``: a scope's values kept in memory while the scope's stamp (migration 0004) is
unchanged; every change to the scope, by this or another process, moves the stamp, and the
next read goes back to the vault. Mechanism assertions only (counts of vault reads), never
timings."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from bastion.config import Config
from bastion.store import WriteTx
from bastion.vault import Secret, Vault
from bastion.vault.cache import ScopeCache

from .conftest import FAST_KDF

SCOPE = "space:a"


def revealed(found: dict[str, Secret]) -> dict[str, str]:
    return {k: v.reveal() for k, v in found.items()}


def counting(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each ``vault.get_many`` call's scope (a read that went to the vault)."""
    calls: list[str] = []
    real = vault.get_many

    def get_many(*args: Any, **kwargs: Any) -> dict[str, Secret]:
        calls.append(str(kwargs.get("scope")))
        return real(*args, **kwargs)

    monkeypatch.setattr(vault, "get_many", get_many)
    return calls


def test_the_stamp_moves_on_every_change_and_on_nothing_else(file_vault: Vault) -> None:
    v = file_vault
    assert v.index.stamp(SCOPE) is None  # never written
    seen = []

    def moved() -> int:
        stamp = v.index.stamp(SCOPE)
        assert stamp is not None
        assert stamp not in seen, "a change gave the scope a stamp it had before"
        seen.append(stamp)
        return stamp

    v.set("k1", "one", scope=SCOPE)
    moved()
    v.set("k2", "two", scope=SCOPE)
    moved()
    v.set("k1", "one again", scope=SCOPE)  # a new version of one key
    moved()
    other = v.index.stamp("space:b")
    v.set("k1", "elsewhere", scope="space:b")  # another scope: this one's stamp stays
    assert v.index.stamp(SCOPE) == seen[-1]
    assert v.index.stamp("space:b") != other
    # Reads are not changes: their audit rows and last_used_at updates leave the stamp alone.
    v.get("k1", scope=SCOPE)
    v.get_many(scope=SCOPE)
    v.audit.flush()
    assert v.index.stamp(SCOPE) == seen[-1]
    v.delete("k2", scope=SCOPE)
    moved()
    v.delete_scope(SCOPE)
    moved()  # emptied: the row stays, with a stamp no earlier state had
    v.set("k1", "back", scope=SCOPE)
    moved()


def test_reads_answer_from_memory_until_the_scope_changes(
    file_vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = file_vault
    v.set("k1", "one", scope=SCOPE)
    v.set("k2", "two", scope=SCOPE)
    cache = ScopeCache(v, actor="test")
    calls = counting(v, monkeypatch)
    assert revealed(cache.get_all(SCOPE)) == {"k1": "one", "k2": "two"}
    first = cache.get_all(SCOPE)
    first["k3"] = Secret("mine")  # the caller's copy, not the cache's
    assert revealed(cache.get_all(SCOPE)) == {"k1": "one", "k2": "two"}
    assert calls == [SCOPE]
    assert (cache.fills, cache.hits) == (1, 2)
    # Only the read that brought the values out of the vault is audited.
    v.audit.flush()
    gets = [e for e in v.audit_entries(scope=SCOPE) if e.operation == "get"]
    assert sorted(e.name for e in gets) == ["k1", "k2"]
    v.set("k2", "changed", scope=SCOPE)
    assert revealed(cache.get_all(SCOPE)) == {"k1": "one", "k2": "changed"}
    v.delete("k1", scope=SCOPE)
    assert revealed(cache.get_all(SCOPE)) == {"k2": "changed"}
    assert calls == [SCOPE] * 3
    cache.forget(SCOPE)
    cache.get_all(SCOPE)
    assert calls == [SCOPE] * 4
    cache.clear()
    assert len(cache) == 0


def test_an_empty_scope_is_cached_until_its_first_secret(
    file_vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = ScopeCache(file_vault)
    assert cache.get_all(SCOPE) == {}
    assert cache.get_all(SCOPE) == {}
    assert cache.hits == 1
    file_vault.set("k1", "one", scope=SCOPE)
    assert revealed(cache.get_all(SCOPE)) == {"k1": "one"}


def test_a_change_between_the_stamp_and_the_values_is_read_again(
    file_cfg: Config, env_key: str, file_vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stamp is read before the values: a write landing between the two leaves the cache
    holding the older stamp, so the next read refreshes (one read too many, never stale)."""
    v = file_vault
    v.set("k1", "one", scope=SCOPE)
    cache = ScopeCache(v)
    real = v.get_many
    with Vault.open(file_cfg, env={"BASTION_VAULT_KEY": env_key}) as writer:

        def racing_get_many(*args: Any, **kwargs: Any) -> dict[str, Secret]:
            writer.set("k2", "two", scope=SCOPE)  # after the stamp was read
            monkeypatch.setattr(v, "get_many", real)
            return real(*args, **kwargs)

        monkeypatch.setattr(v, "get_many", racing_get_many)
        assert revealed(cache.get_all(SCOPE)) == {"k1": "one", "k2": "two"}
        writer.set("k1", "changed", scope=SCOPE)
    assert revealed(cache.get_all(SCOPE)) == {"k1": "changed", "k2": "two"}
    assert cache.fills == 2


_CHILD = textwrap.dedent(
    """
    import sys
    from bastion.config import load_config
    from bastion.vault import Vault
    home, key, op, name = sys.argv[1:5]
    env = {**FAST_KDF, "BASTION_VAULT_BACKEND": "encrypted-file", "BASTION_VAULT_KEY": key}
    with Vault.open(load_config(home, env=env), env=env) as vault:
        if op == "set":
            vault.set(name, sys.argv[5], scope="space:a", actor="child")
        elif op == "delete":
            vault.delete(name, scope="space:a", actor="child")
        else:
            vault.delete_scope("space:a", actor="child")
    """
)


def _in_child(cfg: Config, key: str, *args: str) -> None:
    code = f"FAST_KDF = {FAST_KDF!r}\n{_CHILD}"
    result = subprocess.run(
        [sys.executable, "-c", code, str(cfg.home), key, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_a_change_by_another_process_is_seen_by_the_next_read(
    file_cfg: Config, env_key: str, file_vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = file_vault
    v.set("k1", "one", scope=SCOPE)
    cache = ScopeCache(v)
    calls = counting(v, monkeypatch)
    assert revealed(cache.get_all(SCOPE)) == {"k1": "one"}
    assert revealed(cache.get_all(SCOPE)) == {"k1": "one"}
    assert calls == [SCOPE]
    _in_child(file_cfg, env_key, "set", "k2", "two")
    assert revealed(cache.get_all(SCOPE)) == {"k1": "one", "k2": "two"}
    _in_child(file_cfg, env_key, "set", "k1", "rotated")
    assert revealed(cache.get_all(SCOPE)) == {"k1": "rotated", "k2": "two"}
    _in_child(file_cfg, env_key, "delete", "k2")
    assert revealed(cache.get_all(SCOPE)) == {"k1": "rotated"}
    _in_child(file_cfg, env_key, "delete-scope", "-")
    assert cache.get_all(SCOPE) == {}
    assert calls == [SCOPE] * 5


def test_the_migration_stamps_scopes_written_before_it(tmp_path: Path, env_key: str) -> None:
    """A vault.db from before migration 0004 gets a stamp for every scope it holds."""
    from .conftest import make_home

    cfg = make_home(tmp_path / "home", BASTION_VAULT_BACKEND="encrypted-file")
    with Vault.open(cfg, env={"BASTION_VAULT_KEY": env_key}) as v:
        v.set("k1", "one", scope=SCOPE)
        v.set("k1", "one", scope="space:b")

        def before_0004(tx: WriteTx) -> None:
            for trigger in ("insert", "delete", "update"):
                tx.execute(f"DROP TRIGGER vault_scope_stamps_{trigger}")
            tx.execute("DROP TABLE vault_scope_stamps")
            # The later migrations go too: a history with a gap is refused.
            tx.execute("DROP INDEX vault_secrets_nocase")
            tx.execute("DELETE FROM schema_migrations WHERE namespace = 'vault' AND id >= '0004'")

        v.db.write(before_0004)
    with Vault.open(cfg, env={"BASTION_VAULT_KEY": env_key}) as v:
        assert v.index.stamp(SCOPE) is not None
        assert v.index.stamp("space:b") is not None
