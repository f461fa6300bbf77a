"""Seed 002's "performance equivalent or better": ``getAllSecrets`` of a 20-key space.

Version 1 and version 2 of the same read, cold and warm, timed in one process in interleaved
rounds (each round times every variant, in a rotated order, so a load change on a shared
machine hits them alike); the figures are the medians over the rounds with their range:

* **v1 cold** -- ``load_space`` of the bundle: one ``SELECT`` from ``bastion.db`` (SQLite's
  page cache warm, the connection open) + ``json.loads``. What version 1 did to read a space.
* **v1 warm** -- the bundle kept in memory after that load (version 1's ``SpaceSetup`` held
  by the app): a copy of the held dict. It never sees a key another window or process wrote
  (the seed's data-loss bug comes from exactly that).
* **v2 cold** -- ``get_all_secrets`` with nothing cached: ``Vault.get_many``, 20 values
  decrypted (AES-256-GCM) or fetched from the Secret Service, each read audited.
* **v2 warm** -- ``get_all_secrets`` again: one primary-key read of the space's change stamp
  in ``vault.db`` (``bastion.vault.cache.ScopeCache``), then a copy of the held values. A set
  or delete by any process moves the stamp, so this is as fresh as v2 cold.

The seed's target is "equivalent or better" (<= 1x). Like for like is a read that sees the
database's current state: v2 warm against v1 cold. The script prints every ratio, and whether
that one is met; it does not move the target.

Run: ``.venv/bin/python -m examples.spaces.bench [--rounds N] [--calls N] [--keychain]``
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bastion.app import Home
from bastion.config import load_config
from examples.spaces.app import SpacesApp
from examples.spaces.legacy import BundledSecretsStore
from examples.spaces.schema import namespace_v1
from examples.spaces.secrets import space_scope

KEYS = 20
VARIANTS = ("v1 cold", "v1 warm", "v2 cold", "v2 warm")


def bundle() -> dict[str, str]:
    return {f"provider_{i:02d}_api_key": f"sk-bench-{i:02d}-" + "x" * 40 for i in range(KEYS)}


def per_call(calls: int, fn: Callable[[], object], before: Callable[[], None] | None) -> float:
    """Seconds per call of ``fn`` over ``calls`` calls; ``before`` (untimed) runs before each
    call (v2 cold empties the cache there)."""
    if before is None:  # one timer around the batch: the timer's own cost stays out
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls
    total = 0.0
    for _ in range(calls):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        total += time.perf_counter() - start
    return total / calls


def spread(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:.4f} ms [{min(values) * 1e3:.4f}-{max(values) * 1e3:.4f}]"


def run(root: Path, env: dict[str, str], rounds: int, calls: int, label: str) -> None:
    values = bundle()
    # Two homes with the same 20 keys, open side by side: one still at version 1 (read by
    # version 1's code), one upgraded (the upgrade moves the bundle to the vault).
    homes = {}
    for version in ("v1", "v2"):
        cfg = load_config(root / version, env=env)
        Home.init(cfg).close()
        with Home.open(cfg) as h:
            h.migrator().migrate([namespace_v1()])
            store = BundledSecretsStore(h.db)
            store.create_space("bench", "Bench")
            store.save_all_secrets("bench", values)
        homes[version] = cfg
    scope = space_scope("bench")
    with Home.open(homes["v1"]) as v1_home, SpacesApp.open(homes["v2"], env=env) as app:
        v1_store = BundledSecretsStore(v1_home.db)
        held = v1_store.load_space("bench")  # what version 1's app kept after loading
        got = app.secrets.get_all_secrets("bench")
        assert {k: s.reveal() for k, s in got.items()} == values == held.secrets
        cache = app.secrets.cache
        variants: dict[str, tuple[Callable[[], object], Callable[[], None] | None]] = {
            "v1 cold": (lambda: v1_store.load_space("bench").secrets, None),
            "v1 warm": (lambda: dict(held.secrets), None),
            "v2 cold": (lambda: app.secrets.get_all_secrets("bench"), lambda: cache.forget(scope)),
            "v2 warm": (lambda: app.secrets.get_all_secrets("bench"), None),
        }
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for r in range(rounds):
            order = VARIANTS[r % 4 :] + VARIANTS[: r % 4]
            for name in order:
                fn, before = variants[name]
                times[name].append(per_call(calls, fn, before))
        if label == "keychain":
            app.vault.delete_scope(scope)
    ratios = {
        (a, b): [x / y for x, y in zip(times[a], times[b], strict=True)]
        for a, b in (("v2 cold", "v1 cold"), ("v2 warm", "v1 cold"), ("v2 warm", "v1 warm"))
    }

    def ratio(a: str, b: str) -> str:
        found = ratios[(a, b)]
        return f"{statistics.median(found):.2f}x [{min(found):.2f}-{max(found):.2f}]"

    met = statistics.median(ratios[("v2 warm", "v1 cold")]) <= 1.0
    print(f"{label}: getAllSecrets of {KEYS} keys, {rounds} rounds x {calls} calls, median [range]")
    for name in VARIANTS:
        print(f"  {name}: {spread(times[name])}")
    print(
        f"  v2 warm / v1 cold = {ratio('v2 warm', 'v1 cold')} (target <= 1x, the seed's "
        f"'equivalent or better', like for like: {'met' if met else 'not met'})"
    )
    print(
        f"  v2 cold / v1 cold = {ratio('v2 cold', 'v1 cold')} (20 values from the backend, audited)"
    )
    print(
        f"  v2 warm / v1 warm = {ratio('v2 warm', 'v1 warm')} (v1 warm never sees another writer)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--keychain", action="store_true", help="also on the OS keychain")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "BASTION_VAULT_BACKEND": "encrypted-file",
            "BASTION_VAULT_KEY_SOURCE": "env",
            "BASTION_VAULT_KEY": base64.b64encode(os.urandom(32)).decode(),
        }
        run(Path(tmp) / "file", env, args.rounds, args.calls, "encrypted-file")
        if args.keychain:
            service = {"BASTION_VAULT_SERVICE": f"spaces-bench-{os.getpid()}"}
            run(Path(tmp) / "keychain", service, args.rounds, max(1, args.calls // 20), "keychain")


if __name__ == "__main__":
    main()
