"""Code the spaces tests run in other processes (real processes, real files, one home).

``python -m examples.spaces.tests.worker upgrade-and-die K`` opens the app (running the
upgrade) and SIGKILLs itself right after durable step ``K``: the crash test's victim;
``... change set|delete|delete-space SPACE KEY VALUE`` changes a space's secrets from another
process (the cache tests). The
functions below run under ``multiprocessing`` (spawn) for the concurrency tests.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from typing import Any

from bastion.config import load_config
from examples.spaces.app import SpacesApp
from examples.spaces.legacy import BundledSecretsStore
from examples.spaces.migrate import Step


def _open(home: str, env: Mapping[str, str]) -> SpacesApp:
    return SpacesApp.open(load_config(home, env=env), env=env)


def naive_add_key(home: str, env: dict[str, str], space_id: str, key: str, barrier: Any) -> None:
    """Version 1's flow: load the space, (everyone has loaded), save the bundle with my key."""
    from bastion.app import Home

    with Home.open(load_config(home, env=env)) as h:
        store = BundledSecretsStore(h.db)
        space = store.load_space(space_id)
        barrier.wait(timeout=60)
        store.save_all_secrets(space_id, {**space.secrets, key: f"value-of-{key}"})


def record_add_key(home: str, env: dict[str, str], space_id: str, key: str, barrier: Any) -> None:
    """Version 2's flow under the same interleaving: everyone ready, then each sets its key."""
    with _open(home, env) as app:
        app.secrets.get_all_secrets(space_id)  # the UI's read, as in version 1
        barrier.wait(timeout=60)
        app.secrets.set_secret(space_id, key, f"value-of-{key}")


def record_add_many(home: str, env: dict[str, str], space_id: str, prefix: str, count: int) -> int:
    """Set ``count`` distinct keys ``<prefix>_<i>`` as fast as possible; return how many."""
    with _open(home, env) as app:
        for i in range(count):
            app.secrets.set_secret(space_id, f"{prefix}_{i:04d}", f"{prefix}-value-{i}")
    return count


def delete_and_die(home: str, space_id: str) -> int:
    """Delete a space and SIGKILL this process after its tombstone committed, before the
    vault's delete_scope: the crash between the two steps of ``SpacesApp.delete_space``."""
    app = SpacesApp.open(load_config(home, env=os.environ))

    def die(*args: object, **kwargs: object) -> None:
        print("tombstone committed", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    app.vault.delete_scope = die  # type: ignore[method-assign, assignment]
    app.delete_space(space_id)
    return 1  # not reached


def change_secret(home: str, op: str, space_id: str, key: str, value: str) -> int:
    """Another process's change to a space's secrets, through its own app and vault:
    ``set`` / ``delete`` one key, or ``delete-space`` (tombstone + ``Vault.delete_scope``)."""
    with _open(home, os.environ) as app:
        if op == "set":
            app.secrets.set_secret(space_id, key, value)
        elif op == "delete":
            app.secrets.delete_secret(space_id, key)
        else:
            app.delete_space(space_id)
    print("changed", flush=True)
    return 0


def main(argv: list[str]) -> int:
    command, *args = argv
    if command == "delete-and-die":
        return delete_and_die(os.environ["SPACES_TEST_HOME"], args[0])
    if command == "change":
        return change_secret(os.environ["SPACES_TEST_HOME"], *args)
    if command != "upgrade-and-die":
        print(f"unknown command {command!r}", file=sys.stderr)
        return 2
    kill_after = int(args[0])
    home = os.environ["SPACES_TEST_HOME"]
    seen = 0

    def on_step(step: Step) -> None:
        nonlocal seen
        print(step.kind.value, step.space_id, step.key or "-", flush=True)
        if seen == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        seen += 1

    with SpacesApp.open(load_config(home, env=os.environ), on_step=on_step):
        print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
