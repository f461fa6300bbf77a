"""The index answers list pages and status in SQL, at the cost of the rows asked for.

``Vault.status(names)`` looks each name up by key and ``Vault.page`` reads a page off the
index that holds its order; both take the count from ``vault_counts``, which triggers keep.
The cost is shown with SQLite's own step counts (tests/sqlsteps.py): the same call on a vault
of 20 and of 800 secrets does the same work.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.config import Config
from bastion.store import Database
from bastion.store.migrations import Migrator, Namespace
from bastion.store.plan import assert_plan
from bastion.vault import Vault
from bastion.vault.index import MIGRATIONS_PACKAGE, Index
from tests.sqlsteps import sqlite_steps

from .conftest import make_home, new_env_key


def _vault(root: Path, n: int, scopes: tuple[str, ...] = ("global",)) -> Vault:
    cfg = make_home(root, BASTION_VAULT_BACKEND="encrypted-file")
    vault = Vault.open(cfg, env={"BASTION_VAULT_KEY": new_env_key()})
    for i, scope in zip(range(n), itertools.cycle(scopes), strict=False):
        vault.set(f"KEY_{i:04d}", f"value-{i}-0123456789", scope=scope, actor="test")
    return vault


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    v = _vault(tmp_path / "home", 60, ("global", "bot:1", "bot:2"))
    # Distinct times in an order unlike the names', so each sort is seen to apply.
    for i, meta in enumerate(v.list()):
        updated = 1000.0 + (i * 7919) % 60
        v.db.write(
            lambda tx, m=meta, u=updated, c=2000.0 - i: tx.execute(
                "UPDATE vault_secrets SET updated_at = ?, created_at = ? WHERE scope = ? "
                "AND name = ?",
                (u, c, m.scope, m.name),
            )
        )
    yield v
    v.close()


_KEYS = {
    "name": lambda m: (m.scope, m.name),
    "updated_at": lambda m: (m.updated_at, m.scope, m.name),
    "created_at": lambda m: (m.created_at, m.scope, m.name),
}


@pytest.mark.parametrize("sort", sorted(_KEYS))
@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("scope", [None, "bot:1"])
def test_a_page_is_the_sorted_slice(
    vault: Vault, sort: str, descending: bool, scope: str | None
) -> None:
    everything = sorted(vault.list(scope), key=_KEYS[sort], reverse=descending)
    for limit, offset in ((7, 0), (7, 14), (100, 0), (5, len(everything) - 2), (3, 500)):
        page = vault.page(scope, sort=sort, descending=descending, limit=limit, offset=offset)
        assert list(page.items) == everything[offset : offset + limit]
        assert page.total == len(everything)


@pytest.mark.parametrize(
    ("sort", "descending"), list(itertools.product(sorted(_KEYS), [False, True]))
)
@pytest.mark.parametrize("scope", [None, "bot:1"])
def test_each_order_is_read_off_an_index(
    vault: Vault, sort: str, descending: bool, scope: str | None
) -> None:
    vault.db.write(lambda tx: tx.execute("ANALYZE"))
    seen: list[tuple[str, Any]] = []

    class Recorder:  # the index's real SQL, passed through to the database
        def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
            seen.append((sql, params))
            return vault.db.query(sql, params)

    Index(Recorder()).page(scope, sort=sort, descending=descending, limit=5)  # type: ignore[arg-type]
    ((sql, params),) = seen
    # A walk of an index in order (SCAN ... USING INDEX when no scope narrows it), stopping at
    # the LIMIT: never a sort of every row in a temporary b-tree.
    assert_plan(vault.db, sql, params, allow_scan=["vault_secrets"], allow_temp_btree=False)


def test_status_and_a_page_cost_the_rows_asked_for_not_the_vault(tmp_path: Path) -> None:
    small = _vault(tmp_path / "small", 20)
    large = _vault(tmp_path / "large", 800)
    names = ["KEY_0003", "KEY_0011", "MISSING"]
    costs = {}
    try:
        for label, vault in (("small", small), ("large", large)):
            # Opened inside the counter: a fresh vault on the same file, every connection traced.
            cfg: Config = vault.config
            with sqlite_steps(str(cfg.vault_db_path)) as steps:
                fresh = Vault(cfg, Database.open(cfg.vault_db_path, cfg.store, name="vault"))
                try:
                    steps.reset()
                    status = fresh.status(names)
                    status_steps = steps.steps
                    steps.reset()
                    page = fresh.page(limit=5, sort="updated_at", descending=True)
                    costs[label] = (status_steps, steps.steps)
                finally:
                    fresh.close()
            assert status["secrets"]["KEY_0003"]["configured"] is True
            assert status["secrets"]["MISSING"] == {
                "configured": False,
                "updated_at": None,
                "version": None,
            }
            assert status["count"] == (20 if label == "small" else 800)
            assert len(page.items) == 5
            assert page.total == status["count"]
    finally:
        small.close()
        large.close()
    # 40x the secrets, the same work (a little slack for a deeper b-tree).
    assert costs["large"][0] <= costs["small"][0] * 1.5, costs
    assert costs["large"][1] <= costs["small"][1] * 1.5, costs


def test_counts_follow_every_write_and_reconcile_recounts(tmp_path: Path) -> None:
    vault = _vault(tmp_path / "home", 0)
    try:
        assert vault.status()["count"] == 0
        vault.set("A_KEY", "value-aaaaaaaa", actor="test")
        vault.set("A_KEY", "value-bbbbbbbb", actor="test")  # a new version, not a new secret
        vault.set("B_KEY", "value-cccccccc", scope="bot:7", actor="test")
        vault.set("C_KEY", "value-dddddddd", scope="bot:7", actor="test")
        assert (vault.index.count(), vault.index.count("global"), vault.index.count("bot:7")) == (
            3,
            1,
            2,
        )
        vault.delete("B_KEY", "bot:7", actor="test")
        vault.delete("C_KEY", "bot:7", actor="test")
        assert vault.index.count("bot:7") == 0
        assert vault.db.query("SELECT scope FROM vault_counts") == [("global",)]
        # A salvage copies vault_counts as it was: reconcile --fix writes it from the rows.
        vault.db.write(lambda tx: tx.execute("UPDATE vault_counts SET secrets = 9"))
        assert vault.page().total == 9
        report = vault.reconcile(fix=True, actor="test")
        assert report["recounted"] == {"global": [9, 1]}
        assert vault.page().total == 1
        assert vault.reconcile(fix=True, actor="test")["recounted"] == {}
    finally:
        vault.close()


def test_the_migration_counts_an_existing_vault(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "vault.db")
    try:
        ns = Namespace.from_package("vault", MIGRATIONS_PACKAGE)
        Migrator(db, backups_dir=None).migrate([Namespace("vault", ns.migrations[:1])])
        rows = [
            (scope, f"N{i}", "encrypted-file", 1.0, 2.0, None, 5, 1, "f")
            for i, scope in enumerate(["global"] * 5 + ["bot:1"] * 2)
        ]
        db.write(
            lambda tx: tx.executemany(
                "INSERT INTO vault_secrets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )
        )
        Migrator(db, backups_dir=None).migrate([ns])
        assert dict(db.query("SELECT scope, secrets FROM vault_counts")) == {
            "global": 5,
            "bot:1": 2,
        }
    finally:
        db.close()
