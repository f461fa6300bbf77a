"""Seed 002's "performance equivalent or better": ``getAllSecrets`` of a 20-key space.

Three reads of the same 20 keys, timed in one process against each other:

* version 1 (the baseline): ``load_space`` of the bundle (one ``SELECT`` + ``json.loads``)
  from ``bastion.db``, plaintext;
* version 2: ``SpaceSecrets.get_all_secrets`` (``Vault.get_many``: one pass over the
  encrypted file, every value decrypted and its read audited);
* version 2 as it was before ``get_many``: ``list`` then 20 ``get`` calls, printed beside.

With ``--keychain`` (inside a D-Bus session with an unlocked Secret Service, as
``scripts/run-tests.sh`` starts) the same on the OS keychain: ``get_many`` is one Secret
Service session and one ``GetSecrets`` call.

The bundle has no encryption and no audit: version 2 does strictly more per read (20
AES-GCM decryptions and 20 audited reads, or a keychain round trip). The seed's target is
"equivalent or better" (<= 1x the bundle); the script prints the ratio and whether it is met,
it does not move the target.

Run: ``.venv/bin/python -m examples.spaces.bench [--rounds N] [--keychain]``
"""

from __future__ import annotations

import argparse
import base64
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bastion.app import Home
from bastion.config import load_config
from bastion.vault import Secret
from examples.spaces.app import SpacesApp
from examples.spaces.legacy import BundledSecretsStore
from examples.spaces.schema import namespace_v1
from examples.spaces.secrets import SpaceSecrets, space_scope

KEYS = 20


def per_op(rounds: int, fn: Callable[[], object]) -> float:
    """Best of 5 timings of ``rounds`` calls, per call (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            fn()
        best = min(best, (time.perf_counter() - start) / rounds)
    return best


def bundle() -> dict[str, str]:
    return {f"provider_{i:02d}_api_key": f"sk-bench-{i:02d}-" + "x" * 40 for i in range(KEYS)}


def one_by_one(secrets: SpaceSecrets, space_id: str) -> dict[str, Secret]:
    """``get_all_secrets`` as it was before ``Vault.get_many``: list, then one get per key."""
    scope = space_scope(space_id)
    return {
        m.name: secrets.vault.get(m.name, scope=scope, actor="bench")
        for m in secrets.vault.list(scope)
    }


def run(home: Path, env: dict[str, str], rounds: int, label: str) -> None:
    cfg = load_config(home, env=env)
    Home.init(cfg).close()
    values = bundle()
    with Home.open(cfg) as h:  # version 1's data, read by version 1's code
        h.migrator().migrate([namespace_v1()])
        store = BundledSecretsStore(h.db)
        store.create_space("bench", "Bench")
        store.save_all_secrets("bench", values)
        v1 = per_op(rounds, lambda: store.load_space("bench").secrets)
    with SpacesApp.open(cfg, env=env) as app:  # the upgrade moves the bundle to the vault
        got = app.secrets.get_all_secrets("bench")
        assert {k: s.reveal() for k, s in got.items()} == values
        v2 = per_op(rounds, lambda: app.secrets.get_all_secrets("bench"))
        loop = per_op(max(1, rounds // 4), lambda: one_by_one(app.secrets, "bench"))
        if label == "keychain":
            app.vault.delete_scope(space_scope("bench"))
    verdict = "met" if v2 <= v1 else "not met"
    print(
        f"{label}: getAllSecrets of {KEYS} keys: get_many {v2 * 1e3:.3f} ms vs the v1 bundle "
        f"{v1 * 1e3:.3f} ms = {v2 / v1:.1f}x (target <= 1x, the seed's 'equivalent': "
        f"{verdict}); list + {KEYS} gets {loop * 1e3:.3f} ms = {loop / v2:.1f}x get_many"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--keychain", action="store_true", help="also on the OS keychain")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "BASTION_VAULT_BACKEND": "encrypted-file",
            "BASTION_VAULT_KEY_SOURCE": "env",
            "BASTION_VAULT_KEY": base64.b64encode(os.urandom(32)).decode(),
        }
        run(Path(tmp) / "file", env, args.rounds, "encrypted-file")
        if args.keychain:
            service = {"BASTION_VAULT_SERVICE": f"spaces-bench-{os.getpid()}"}
            run(Path(tmp) / "keychain", service, max(1, args.rounds // 10), "keychain")


if __name__ == "__main__":
    main()
