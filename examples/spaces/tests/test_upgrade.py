"""The upgrade from bundled secrets to per-(space, key) records: lossless, idempotent,
resumable after a crash at any point, and leaving no plaintext behind in the home."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bastion.app import Home
from bastion.config import Config
from bastion.errors import ConstraintViolation, MigrationFailed
from bastion.store.migrations import Migrator
from bastion.vault import Vault
from examples.spaces.app import SpacesApp
from examples.spaces.legacy import BundledSecretsStore
from examples.spaces.migrate import Step, StepKind, migrate_bundled_secrets
from examples.spaces.schema import namespace_v2
from examples.spaces.secrets import SpaceSecrets
from examples.spaces.tests.conftest import MakeV1

REPO = Path(__file__).resolve().parents[3]

BUNDLES = {
    "alpha": {
        "anthropic_api_key": "SENTINEL-ant-alpha-7f3a9c",
        "openai_api_key": "SENTINEL-oai-alpha-1b2c3d",
        "google_api_key": "SENTINEL-goo-alpha-\u00e9\u00e8-9z",
    },
    "beta": {
        "anthropic_api_key": "SENTINEL-ant-beta-55aa11",
        "mistral_api_key": "SENTINEL-mis-beta-0f0f0f",
        "openai_api_key": "SENTINEL-oai-beta-c0ffee",
    },
    "no-secrets": {},  # a space whose bundle was never set (NULL)
}
#: Durable steps of a full upgrade of BUNDLES: 6 keys stored, 2 bundles cleared, 1 purge.
STEPS = 6 + 2 + 1
#: After a kill right after step k, what the next open stores and finds already present.
#: Steps: alpha's 3 keys (0-2), alpha cleared (3), beta's 3 keys (4-6), beta cleared (7), purge.
RERUN = {
    0: (5, 1),
    1: (4, 2),
    2: (3, 3),
    3: (3, 0),
    4: (2, 1),
    5: (1, 2),
    6: (0, 3),
    7: (0, 0),
    8: (0, 0),
}


def _values(app: SpacesApp, space_id: str) -> dict[str, str]:
    return {k: v.reveal() for k, v in app.secrets.get_all_secrets(space_id).items()}


def _assert_complete(app: SpacesApp) -> None:
    for space_id, bundle in BUNDLES.items():
        assert _values(app, space_id) == bundle
        # exactly once: one record per key, each written once (version 1)
        records = app.secrets.list_secrets(space_id)
        assert [r.secret_key for r in records] == sorted(bundle)
        assert all(r.version == 1 for r in records)
    columns = [row[1] for row in app.home.db.query("PRAGMA table_info(spaces)")]
    # the bundles' column is gone (0002); 0003 adds the empty compatibility column back
    # for one release, and the sync fields
    assert columns == [
        "id",
        "name",
        "created_at",
        "secrets",
        "version",
        "updated_at",
        "origin",
        "deleted_at",
    ]
    assert app.home.db.scalar("SELECT count(*) FROM spaces WHERE secrets IS NOT NULL") == 0
    assert {s.id for s in app.list_spaces()} == set(BUNDLES)


def _sentinel_hits(home: Path) -> list[str]:
    """Every file under the home holding a sentinel's bytes (db, -wal, backups, ...)."""
    values = [v.encode() for bundle in BUNDLES.values() for v in bundle.values()]
    hits = []
    for path in sorted(home.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path.name}: {v[:14]!r}" for v in values if v in data]
    return hits


def test_upgrade_moves_every_key_and_drops_the_column(
    cfg: Config, env: dict[str, str], make_v1_home: MakeV1
) -> None:
    make_v1_home(BUNDLES)
    steps: list[Step] = []
    with SpacesApp.open(cfg, env=env, on_step=steps.append) as app:
        assert app.upgrade is not None
        assert app.upgrade.to_dict() == {"spaces": 2, "stored": 6, "present": 0}
        _assert_complete(app)
        applied = app.home.db.query(
            "SELECT id FROM schema_migrations WHERE namespace = 'spaces' ORDER BY id"
        )
        assert [r[0] for r in applied] == [
            "0001_spaces",
            "0002_drop_bundled_secrets",
            "0003_compat_and_sync",
        ]
        rec = app.secrets.record("alpha", "openai_api_key")
        assert rec is not None
        assert rec.created_at == rec.updated_at > 0
        assert rec.id == "alpha_openai_api_key"
    assert len(steps) == STEPS
    assert [s.kind for s in steps].count(StepKind.CLEARED) == 2


def test_upgrade_is_idempotent(cfg: Config, env: dict[str, str], make_v1_home: MakeV1) -> None:
    make_v1_home(BUNDLES)
    SpacesApp.open(cfg, env=env).close()
    with SpacesApp.open(cfg, env=env) as app:
        assert app.upgrade is None  # nothing left to do
        _assert_complete(app)


def test_the_move_run_twice_changes_nothing_the_second_time(
    cfg: Config, env: dict[str, str], make_v1_home: MakeV1
) -> None:
    make_v1_home(BUNDLES)
    with Home.open(cfg) as home, Vault.open(cfg, env=env) as vault:
        secrets = SpaceSecrets(vault)
        first = migrate_bundled_secrets(home.db, secrets)
        second = migrate_bundled_secrets(home.db, secrets)
        assert first.to_dict() == {"spaces": 2, "stored": 6, "present": 0}
        assert second.to_dict() == {"spaces": 0, "stored": 0, "present": 0}
        assert len(vault.list("space:alpha")) == 3


def test_no_plaintext_left_anywhere_in_the_home(
    cfg: Config, env: dict[str, str], make_v1_home: MakeV1
) -> None:
    make_v1_home(BUNDLES)
    assert _sentinel_hits(cfg.home), "version 1 keeps the values in bastion.db (the scan works)"
    with SpacesApp.open(cfg, env=env) as app:
        _assert_complete(app)
        assert _sentinel_hits(cfg.home) == []  # while open: db, -wal, -shm, backups, vault.db
    assert _sentinel_hits(cfg.home) == []


@pytest.mark.posix
@pytest.mark.parametrize("kill_after", range(STEPS))
def test_upgrade_killed_at_any_step_finishes_on_the_next_open(
    cfg: Config, env: dict[str, str], make_v1_home: MakeV1, kill_after: int
) -> None:
    make_v1_home(BUNDLES)
    proc = subprocess.run(
        [sys.executable, "-m", "examples.spaces.tests.worker", "upgrade-and-die", str(kill_after)],
        cwd=REPO,
        env={**os.environ, **env, "SPACES_TEST_HOME": str(cfg.home)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert len(proc.stdout.splitlines()) == kill_after + 1  # died right after that step
    with SpacesApp.open(cfg, env=env) as app:
        _assert_complete(app)
        assert app.upgrade is not None
        # A re-run stores only what the dead run had not, and finds the rest present.
        assert (app.upgrade.stored, app.upgrade.present) == RERUN[kill_after]
    assert _sentinel_hits(cfg.home) == []


def test_a_bundle_changed_during_the_move_is_moved_again(
    cfg: Config, env: dict[str, str], make_v1_home: MakeV1
) -> None:
    """The clear is a compare-and-set on the bundle's text: a key version 1 added after the
    move read the bundle is not cleared away with it."""
    make_v1_home({"s1": {"openai_api_key": "sk-first"}})
    changed = False

    def version_one_writes(step: Step) -> None:
        nonlocal changed
        if step.kind is StepKind.STORED and not changed:
            changed = True
            with Home.open(cfg) as home:  # another process, still on version 1
                BundledSecretsStore(home.db).set_secret("s1", "late_api_key", "sk-late")

    with SpacesApp.open(cfg, env=env, on_step=version_one_writes) as app:
        assert _values(app, "s1") == {"openai_api_key": "sk-first", "late_api_key": "sk-late"}
        assert app.upgrade is not None
        assert app.upgrade.to_dict() == {"spaces": 1, "stored": 2, "present": 1}


def test_dropping_the_column_refuses_while_a_bundle_is_left(
    cfg: Config, make_v1_home: MakeV1
) -> None:
    make_v1_home({"s1": {"openai_api_key": "sk-keep-me"}})
    with Home.open(cfg) as home:
        with pytest.raises(MigrationFailed) as info:
            Migrator(home.db, backups_dir=cfg.backups_dir).migrate([namespace_v2()])
        assert "sk-keep-me" not in str(info.value)
        assert BundledSecretsStore(home.db).load_space("s1").secrets == {
            "openai_api_key": "sk-keep-me"
        }


def test_a_damaged_bundle_is_refused_without_echoing_it(
    cfg: Config, env: dict[str, str], make_v1_home: MakeV1
) -> None:
    make_v1_home({"s1": {}})
    with Home.open(cfg) as home:
        home.db.write(
            lambda tx: tx.execute("UPDATE spaces SET secrets = ? WHERE id = 's1'", ('{"k": "sk-x',))
        )
    with pytest.raises(MigrationFailed) as info:
        SpacesApp.open(cfg, env=env)
    assert "space s1" in str(info.value)
    assert "sk-x" not in str(info.value)
    assert "sk-x" not in repr(info.value.details)


def test_an_empty_bundle_is_cleared_without_storing_anything(
    cfg: Config, env: dict[str, str], make_v1_home: MakeV1
) -> None:
    make_v1_home({"s1": {}})
    with Home.open(cfg) as home:
        home.db.write(lambda tx: tx.execute("UPDATE spaces SET secrets = '{}' WHERE id = 's1'"))
    with SpacesApp.open(cfg, env=env) as app:
        assert app.upgrade is not None
        assert app.upgrade.to_dict() == {"spaces": 1, "stored": 0, "present": 0}
        assert app.secrets.list_secrets("s1") == []


def test_v1_code_keeps_working_read_only_after_the_upgrade(
    cfg: Config, env: dict[str, str], make_v1_home: MakeV1
) -> None:
    """The seed: "old code will continue to work during transition period". Version 1's
    store, unchanged, on an upgraded home: it lists and loads spaces (no key configured: the
    compatibility column is empty), creates spaces, and its bundle save is refused without
    changing anything, so a key cannot land where version 2 never reads it."""
    make_v1_home({"s1": {"openai_api_key": "sk-moved-away"}})
    with SpacesApp.open(cfg, env=env):
        pass
    with Home.open(cfg) as home:
        v1 = BundledSecretsStore(home.db)
        space = v1.load_space("s1")
        assert (space.id, space.name, space.secrets) == ("s1", "Space s1", {})
        v1.create_space("s2", "Made by version 1")
        with pytest.raises(ConstraintViolation, match="CHECK constraint failed: secrets IS NULL"):
            v1.save_all_secrets("s1", {"openai_api_key": "sk-new-by-v1"})
        assert v1.load_space("s1").secrets == {}
    with SpacesApp.open(cfg, env=env) as app:
        assert [s.id for s in app.list_spaces()] == ["s2", "s1"]  # by name
        assert _values(app, "s1") == {"openai_api_key": "sk-moved-away"}
