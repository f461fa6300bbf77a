"""When a write unit that PostgreSQL refused is run again. Pure.

PostgreSQL's counterpart of SQLite's "database is locked": under SERIALIZABLE (how bastion
runs write units, so that they mean what they mean on SQLite's one writer) two transactions
that touched the same rows cannot both commit, and the server aborts one with
``serialization_failure`` (SQLSTATE 40001); two that wait on each other's locks get
``deadlock_detected`` (40P01). Either way nothing of the aborted transaction was written, so
running the unit again is safe (its ``on_rollback`` compensations ran first), and is what
every PostgreSQL client is told to do. The caller never sees these errors unless the bound
is spent.

This module decides, and nothing else: no clock, no sleep, no connection (the shape of
``supervisor/policy.py``). The engine feeds it ``time.monotonic()`` and a ``random.Random``;
the tests feed it a fake clock and a seeded RNG.

Delays are "full jitter" (uniform between 0 and an exponentially growing cap): writers that
collided once must not collide again in lockstep, and the spread is what lets 8 writers on
the same rows all get through (bench/postgres.py).
"""

from __future__ import annotations

import dataclasses
import enum
import random

__all__ = [
    "RETRYABLE",
    "Action",
    "Decision",
    "RetrySpec",
    "RetryState",
    "is_retryable",
    "on_failure",
]

#: SQLSTATEs whose transaction wrote nothing and may simply be run again.
RETRYABLE: dict[str, str] = {
    "40001": "serialization failure",
    "40P01": "deadlock",
}


def is_retryable(sqlstate: str | None) -> bool:
    """Whether a transaction aborted with ``sqlstate`` may be run again as it was."""
    return sqlstate in RETRYABLE


class Action(enum.Enum):
    """What to do with a unit the server aborted."""

    RETRY = "retry"  # wait ``delay``, then run the unit again
    GIVE_UP = "give-up"  # the bound is spent: the caller gets StoreBusy


@dataclasses.dataclass(frozen=True, slots=True)
class RetrySpec:
    """The bound: at most ``max_attempts`` runs of one unit, and no new attempt once
    ``budget_s`` has passed since its first failure; delays grow from ``initial_s`` by
    ``factor`` up to ``max_s``."""

    max_attempts: int = 50
    initial_s: float = 0.0005
    factor: float = 2.0
    max_s: float = 0.05
    budget_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if not 0 <= self.initial_s <= self.max_s:
            raise ValueError(
                f"want 0 <= initial_s <= max_s, got initial_s={self.initial_s}, max_s={self.max_s}"
            )
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        if self.budget_s <= 0:
            raise ValueError(f"budget_s must be > 0, got {self.budget_s}")


@dataclasses.dataclass(frozen=True, slots=True)
class RetryState:
    """One unit's history: failed attempts so far and when the first one failed."""

    failures: int = 0
    first_failure_at: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    #: Seconds to wait before the next attempt (0 when giving up).
    delay: float
    reason: str


def delay_cap(spec: RetrySpec, failures: int) -> float:
    """The most the wait after the ``failures``-th failure may be (before jitter)."""
    return min(spec.max_s, spec.initial_s * spec.factor ** max(failures - 1, 0))


def on_failure(
    state: RetryState,
    spec: RetrySpec,
    *,
    sqlstate: str | None,
    now: float,
    rng: random.Random | None = None,
) -> tuple[RetryState, Decision]:
    """A run of the unit was aborted with ``sqlstate`` at ``now`` (monotonic seconds). Retry
    (after the returned delay) or give up?"""
    what = RETRYABLE.get(sqlstate or "", f"SQLSTATE {sqlstate}")
    first = state.first_failure_at if state.first_failure_at is not None else now
    new = RetryState(failures=state.failures + 1, first_failure_at=first)
    if not is_retryable(sqlstate):
        return new, Decision(Action.GIVE_UP, 0.0, f"{what} is not retryable")
    if new.failures >= spec.max_attempts:
        return new, Decision(
            Action.GIVE_UP, 0.0, f"{what} on each of {new.failures} attempts (the bound)"
        )
    if now - first >= spec.budget_s:
        return new, Decision(
            Action.GIVE_UP,
            0.0,
            f"{what}s for {now - first:.3g}s over {new.failures} attempts (the bound is "
            f"{spec.budget_s:g}s)",
        )
    cap = delay_cap(spec, new.failures)
    delay = rng.uniform(0.0, cap) if rng is not None else cap
    return new, Decision(
        Action.RETRY, delay, f"{what}; attempt {new.failures + 1} after {delay:.2g}s"
    )
