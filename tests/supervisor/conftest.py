"""Fixtures for supervisor tests: a real bastion.db, specs for the kids, an in-memory
SecretSource, and a runner for async scenarios."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bastion.config import StoreConfig, SupervisorConfig
from bastion.errors import SecretNotFound
from bastion.store import Database
from bastion.supervisor import _platform as plat
from bastion.supervisor.spec import ServiceSpec, parse_spec
from tests.helpers import remove_home_cgroup

KIDS = str(Path(__file__).with_name("kids.py"))
T = TypeVar("T")

#: ``[supervisor] parent_death`` modes, for tests that must hold in each the platform module
#: in use offers: the kernel's parent-death signal (Linux) and the shim with its
#: parent-death pipe (any POSIX; the only one under BASTION_PORTABLE=1, as on macOS).
PARENT_DEATH = [m for m in ("pdeathsig", "pipe") if m in plat.PARENT_DEATH_MODES]
parametrize_parent_death = pytest.mark.parametrize("parent_death", PARENT_DEATH)


class DictSecrets:
    """A SecretSource over a dict: the explicit in-memory stand-in for the vault."""

    def __init__(self, values: dict[tuple[str, str], str]) -> None:
        self.values = values
        self.calls: list[tuple[str, str]] = []

    def resolve(self, scope: str, name: str) -> str:
        self.calls.append((scope, name))
        try:
            return self.values[(scope, name)]
        except KeyError:
            raise SecretNotFound(f"no secret {scope}/{name}") from None


def kid(name: str, *args: str, **extra: Any) -> ServiceSpec:
    """A spec running ``kids.py MODE ARGS`` with short test-friendly policy defaults."""
    data: dict[str, Any] = {
        "argv": [sys.executable, KIDS, *args],
        "restart": {"backoff_initial_s": 0.05, "backoff_max_s": 1.0, "jitter": 0.0},
        "breaker": {"open_timeout_s": 0.5},
        "stop": {"grace_s": 2.0},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return parse_spec(name, data)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(tmp_path / "bastion.db", StoreConfig(), name="bastion")
    yield database
    database.close()
    remove_home_cgroup(database.path)  # what a kill -9'd test daemon left


@pytest.fixture
def fast_logs() -> SupervisorConfig:
    return SupervisorConfig(log_batch_ms=10)


def run(coro_fn: Callable[[], Coroutine[Any, Any, T]], timeout: float = 120) -> T:
    """Run an async scenario with an overall deadline (a hang fails, never blocks CI)."""

    async def bounded() -> T:
        task = asyncio.ensure_future(coro_fn())
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            # Say where every task is stuck before giving up: a hang must be diagnosable.
            for other in asyncio.all_tasks():
                other.print_stack(file=sys.stderr)
            task.cancel()
            raise AssertionError(f"scenario did not finish within {timeout}s")
        return task.result()

    return asyncio.run(bounded())
