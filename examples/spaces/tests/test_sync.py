"""Deleting a space with its secrets, tombstones, and two copies of a space converging.

Seed 002: "Ensure RepTree sync handles schema changes gracefully" and "no regression in sync
functionality". The example has no sync layer; what it must offer one is checked here: stable
record ids, a version and time per write, the replica that wrote it, and tombstones, such that
copies that receive the same records in any order end up equal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.app import Home
from bastion.config import Config, load_config
from bastion.errors import Conflict, NotFound
from examples.spaces.app import SpaceRecord, SpacesApp
from examples.spaces.secrets import space_scope

REPO = Path(__file__).resolve().parents[3]


def _open(tmp_path: Path, env: dict[str, str], name: str) -> SpacesApp:
    cfg = load_config(tmp_path / name, env=env)
    Home.init(cfg).close()
    return SpacesApp.open(cfg, env=env)


@pytest.fixture
def app(cfg: Config, env: dict[str, str]) -> Iterator[SpacesApp]:
    with SpacesApp.open(cfg, env=env) as opened:
        yield opened


def test_deleting_a_space_deletes_its_secrets_and_leaves_a_tombstone(app: SpacesApp) -> None:
    app.create_space("work", "Work")
    app.create_space("home", "Home")
    for key in ("anthropic_api_key", "openai_api_key", "google_api_key"):
        app.secrets.set_secret("work", key, f"sk-{key}")
    app.secrets.set_secret("home", "openai_api_key", "sk-home")
    deletion = app.delete_space("work")
    assert sorted(m.name for m in deletion.deleted) == [
        "anthropic_api_key",
        "google_api_key",
        "openai_api_key",
    ]
    assert deletion.pending == 0
    assert space_scope("work") not in app.vault.scopes()
    assert app.secrets.get_all_secrets("work") == {}
    assert [s.id for s in app.list_spaces()] == ["home"]
    assert app.secrets.get_secret("home", "openai_api_key") is not None  # other spaces keep
    (tomb,) = [r for r in app.records() if r.id == "work"]
    assert tomb.deleted_at is not None
    assert tomb.version == 2
    assert tomb.origin == app.replica_id
    with pytest.raises(NotFound):
        app.rename_space("work", "Back?")
    # Created again: the tombstone becomes a newer live version (a sync layer sees it).
    app.create_space("work", "Work again")
    (back,) = [r for r in app.records() if r.id == "work"]
    assert (back.deleted_at, back.version, back.name) == (None, 3, "Work again")
    assert back.updated_at > tomb.updated_at
    with pytest.raises(Conflict):
        app.create_space("work", "Twice")


@pytest.mark.posix
def test_a_crash_between_tombstone_and_secrets_delete_is_finished_on_open(
    cfg: Config, env: dict[str, str]
) -> None:
    with SpacesApp.open(cfg, env=env) as app:
        app.create_space("work", "Work")
        app.secrets.set_secret("work", "openai_api_key", "sk-doomed")
        app.create_space("home", "Home")
        app.secrets.set_secret("home", "openai_api_key", "sk-kept")
    proc = subprocess.run(
        [sys.executable, "-m", "examples.spaces.tests.worker", "delete-and-die", "work"],
        cwd=REPO,
        env={**os.environ, **env, "SPACES_TEST_HOME": str(cfg.home)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.splitlines() == ["tombstone committed"]
    with Home.open(cfg) as home:  # the state the crash left: tombstone, secrets still there
        assert home.db.scalar("SELECT deleted_at IS NOT NULL FROM spaces WHERE id = 'work'")
    with SpacesApp.open(cfg, env=env) as app:
        assert app.finished_deletes == ("work",)
        assert space_scope("work") not in app.vault.scopes()
        assert app.secrets.get_secret("home", "openai_api_key") is not None
    with SpacesApp.open(cfg, env=env) as app:
        assert app.finished_deletes == ()  # nothing left to finish


def _state(app: SpacesApp) -> list[SpaceRecord]:
    return sorted(app.records(), key=lambda r: r.id)


def test_two_copies_converge_after_concurrent_edits_in_any_order(
    tmp_path: Path, env: dict[str, str]
) -> None:
    a = _open(tmp_path, env, "a")
    b = _open(tmp_path, env, "b")
    try:
        assert a.replica_id != b.replica_id
        a.create_space("work", "Work")
        a.create_space("old", "Old")
        a.create_space("lab", "Lab")
        a.secrets.set_secret("old", "openai_api_key", "sk-a-old")
        b.apply(a.records())
        b.secrets.set_secret("old", "openai_api_key", "sk-b-old")
        assert _state(a) == _state(b)
        since = max(r.updated_at for r in a.records())

        # Concurrent edits, neither copy seeing the other's: both rename "work", one renames
        # "old" while the other deletes it, each renames "lab" in turn.
        a.rename_space("work", "Work (A)")
        b.rename_space("work", "Work (B)")
        a.rename_space("old", "Old (A)")
        b.delete_space("old")
        b.rename_space("lab", "Lab (B)")
        a.rename_space("lab", "Lab (A)")
        from_a = a.records(since)
        from_b = b.records(since)
        assert len(from_a) == 3
        assert len(from_b) == 3
        everything = from_a + from_b

        # Each copy receives the other's changes; third copies receive all of them one
        # record at a time, in different orders (forward, backward, interleaved).
        a.apply(from_b)
        b.apply(from_a)
        orders = [
            everything,
            everything[::-1],
            [r for pair in zip(from_b, from_a, strict=True) for r in pair],
        ]
        copies = []
        for n, order in enumerate(orders):
            copy = _open(tmp_path, env, f"copy{n}")
            copies.append(copy)
            for record in order:
                copy.apply([record])
        base = _state(a)
        assert _state(b) == base
        for copy in copies:
            # The copies never saw the records older than ``since``: compare what both have.
            assert [r for r in base if r.updated_at > since] == _state(copy)
        # What won is each record's latest write, the same on every copy.
        by_id = {r.id: r for r in base}
        for space_id in ("work", "old", "lab"):
            writes = [r for r in everything if r.id == space_id]
            assert by_id[space_id] == max(writes, key=lambda r: r.order)
        assert by_id["lab"].name == "Lab (A)"  # A renamed it after B did
        # "old": B's delete and A's rename were concurrent; the later write won on both.
        winner = max((r for r in everything if r.id == "old"), key=lambda r: r.order)
        assert (by_id["old"].deleted_at is None) == (winner.deleted_at is None)
        for app in (a, b):
            has_old = space_scope("old") in app.vault.scopes()
            assert has_old == (winner.deleted_at is None)  # a winning tombstone took keys too
        for copy in copies:
            copy.close()
    finally:
        a.close()
        b.close()
