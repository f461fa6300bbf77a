"""The seed's data-loss bug, reproduced on version 1, and the same interleavings on version 2.

Version 1 stores all of a space's secrets as one object; each writer loads it, adds its key and
saves the whole object. Two writers that loaded before either saved lose all but one key. The
per-(space, key) records of version 2 have nothing to overwrite: the same interleaving keeps
every key.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable

from bastion.app import Home
from bastion.config import Config
from examples.spaces.app import SpacesApp
from examples.spaces.legacy import BundledSecretsStore
from examples.spaces.tests import worker
from examples.spaces.tests.conftest import MakeV1

WRITERS = 4


def test_v1_two_windows_saving_the_bundle_lose_a_key(cfg: Config, make_v1_home: MakeV1) -> None:
    make_v1_home({"s1": {"google_api_key": "AIza-existing"}})
    with Home.open(cfg) as home:
        store = BundledSecretsStore(home.db)
        # Two windows (or a window and the sync layer) hold the space as loaded.
        window_a = store.load_space("s1")
        window_b = store.load_space("s1")
        store.save_all_secrets("s1", {**window_a.secrets, "anthropic_api_key": "sk-ant"})
        store.save_all_secrets("s1", {**window_b.secrets, "openai_api_key": "sk-oai"})
        final = store.load_space("s1").secrets
    assert sorted(final) == ["google_api_key", "openai_api_key"]  # anthropic's key is gone


def _run_writers(target: Callable[..., None], cfg: Config, env: dict[str, str]) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WRITERS)
    procs = [
        ctx.Process(target=target, args=(str(cfg.home), env, "s1", f"key_{i}", barrier))
        for i in range(WRITERS)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * WRITERS


def test_v1_concurrent_processes_lose_keys(
    cfg: Config, env: dict[str, str], make_v1_home: MakeV1
) -> None:
    make_v1_home({"s1": {}})
    # Every process loads before any saves (a barrier between load and save).
    _run_writers(worker.naive_add_key, cfg, env)
    with Home.open(cfg) as home:
        final = BundledSecretsStore(home.db).load_space("s1").secrets
    assert len(final) == 1, f"{WRITERS} writers, {WRITERS - len(final)} keys lost"


def test_v2_concurrent_processes_keep_every_key(
    cfg: Config, env: dict[str, str], make_v1_home: MakeV1
) -> None:
    make_v1_home({"s1": {}})
    SpacesApp.open(cfg, env=env).close()  # upgrade to version 2
    _run_writers(worker.record_add_key, cfg, env)
    with SpacesApp.open(cfg, env=env) as app:
        values = {k: v.reveal() for k, v in app.secrets.get_all_secrets("s1").items()}
    assert values == {f"key_{i}": f"value-of-key_{i}" for i in range(WRITERS)}
