"""Restart policy, backoff with jitter, the restart window and the circuit breaker. Pure.

Nothing here reads a clock, sleeps or touches a process: every function takes ``now`` (wall
seconds, because the restart history and the breaker's open time are *stored* and must mean
the same after a daemon restart) and, for jitter, a ``random.Random``. The supervisor feeds
these with real time; the unit tests feed them a fake clock and a seeded RNG.

The state is one frozen :class:`PolicyState`; each event (:func:`on_failure`,
:func:`on_healthy`, :func:`on_open_elapsed`, :func:`on_stable`, :func:`reset`) returns a new
state plus, for failures, a :class:`Decision` saying what to do next.
"""

from __future__ import annotations

import dataclasses
import enum
import random

from bastion.supervisor.spec import BreakerSpec, RestartSpec
from bastion.supervisor.states import BreakerState

__all__ = [
    "Action",
    "Decision",
    "PolicyState",
    "backoff_delay",
    "on_failure",
    "on_healthy",
    "on_open_elapsed",
    "on_stable",
    "reset",
]


class Action(enum.Enum):
    """What the supervisor does after a child failed or exited."""

    RESTART = "restart"  # wait ``delay`` (BACKOFF), then start again
    OPEN = "open"  # breaker open: wait ``delay`` (the open timeout), then one trial (HALF_OPEN)
    STOP = "stop"  # clean exit under on-failure/never: STOPPED
    FAIL = "fail"  # failed exit under never: FAILED, until an operator starts it


@dataclasses.dataclass(frozen=True, slots=True)
class PolicyState:
    """Restart history and breaker of one service; persisted as one row."""

    #: Consecutive failures since the last stable run; the backoff exponent.
    attempt: int = 0
    #: Wall times of the restarts granted inside the current window, oldest first.
    restarts: tuple[float, ...] = ()
    breaker: BreakerState = BreakerState.CLOSED
    #: Wall time the breaker last opened, and the timeout it opened with.
    opened_at: float | None = None
    open_timeout: float = 0.0
    #: Healthy checks counted during a half-open trial.
    half_open_successes: int = 0
    #: How many times the breaker opened (for status and events).
    trips: int = 0

    def open_until(self) -> float | None:
        """Wall time the open breaker allows a trial, or None when not open."""
        if self.breaker is not BreakerState.OPEN or self.opened_at is None:
            return None
        return self.opened_at + self.open_timeout


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """What the policy decided: restart (after ``delay``), open the breaker, or give up."""

    action: Action
    #: Seconds to wait before the next start (backoff delay or open timeout); 0 otherwise.
    delay: float
    reason: str


def backoff_delay(spec: RestartSpec, attempt: int, rng: random.Random | None = None) -> float:
    """``initial * factor**attempt`` capped at ``max``, then jittered by +-``jitter`` and capped.

    Jitter spreads restarts of many services that failed together (a shared dependency went
    away) so they do not come back in lockstep.
    """
    base = spec.backoff_initial_s * (spec.backoff_factor ** max(attempt, 0))
    base = min(base, spec.backoff_max_s)
    if spec.jitter and rng is not None:
        base *= 1.0 + rng.uniform(-spec.jitter, spec.jitter)
    return max(0.0, min(base, spec.backoff_max_s))


def _in_window(state: PolicyState, spec: RestartSpec, now: float) -> tuple[float, ...]:
    return tuple(t for t in state.restarts if now - t < spec.window_s)


def on_failure(
    state: PolicyState,
    restart: RestartSpec,
    breaker: BreakerSpec,
    *,
    now: float,
    exit_ok: bool,
    rng: random.Random | None = None,
) -> tuple[PolicyState, Decision]:
    """A child exited (``exit_ok``: status 0) or was killed as unhealthy. What next?"""
    if restart.policy == "never" or (restart.policy == "on-failure" and exit_ok):
        if exit_ok:
            return state, Decision(Action.STOP, 0.0, f"exited cleanly; restart={restart.policy}")
        return state, Decision(Action.FAIL, 0.0, "failed; restart=never")

    if state.breaker is BreakerState.HALF_OPEN:
        # HALF_OPEN -> OPEN: the trial failed; back off the breaker itself (capped).
        timeout = min(
            max(state.open_timeout, breaker.open_timeout_s) * breaker.open_timeout_factor,
            breaker.open_timeout_max_s,
        )
        new = dataclasses.replace(
            state,
            breaker=BreakerState.OPEN,
            opened_at=now,
            open_timeout=timeout,
            half_open_successes=0,
            trips=state.trips + 1,
        )
        return new, Decision(Action.OPEN, timeout, f"half-open trial failed; open {timeout:g}s")

    recent = _in_window(state, restart, now)
    # ``attempt`` counts the failures since the last stable run; this one is the next.
    tripped = 0 < breaker.failure_threshold <= state.attempt + 1
    if tripped or len(recent) >= restart.max_restarts:
        # CLOSED -> OPEN: budget spent. Not a permanent FATAL: a trial follows the timeout.
        timeout = breaker.open_timeout_s
        new = dataclasses.replace(
            state,
            restarts=recent,
            breaker=BreakerState.OPEN,
            opened_at=now,
            open_timeout=timeout,
            half_open_successes=0,
            trips=state.trips + 1,
        )
        if tripped:
            reason = (
                f"{state.attempt + 1} consecutive failures reached "
                f"breaker.failure_threshold={breaker.failure_threshold}; breaker open {timeout:g}s"
            )
        else:
            reason = (
                f"{len(recent)} restarts in {restart.window_s:g}s spent the budget; "
                f"breaker open {timeout:g}s"
            )
        return new, Decision(Action.OPEN, timeout, reason)

    delay = backoff_delay(restart, state.attempt, rng)
    new = dataclasses.replace(state, attempt=state.attempt + 1, restarts=(*recent, now))
    reason = f"restart {len(recent) + 1}/{restart.max_restarts} after {delay:.3g}s backoff"
    return new, Decision(Action.RESTART, delay, reason)


def on_open_elapsed(state: PolicyState) -> PolicyState:
    """OPEN -> HALF_OPEN: the open timeout passed; one trial start follows."""
    if state.breaker is not BreakerState.OPEN:
        return state
    return dataclasses.replace(state, breaker=BreakerState.HALF_OPEN, half_open_successes=0)


def on_healthy(state: PolicyState, breaker: BreakerSpec) -> tuple[PolicyState, bool]:
    """A health check passed. Returns the new state and whether the breaker just closed."""
    if state.breaker is not BreakerState.HALF_OPEN:
        return state, False
    successes = state.half_open_successes + 1
    if successes >= breaker.success_threshold:
        # HALF_OPEN -> CLOSED: forget the failures that opened it.
        return reset(state), True
    return dataclasses.replace(state, half_open_successes=successes), False


def on_stable(state: PolicyState) -> PolicyState:
    """The run stayed healthy for ``reset_after``: the next failure backs off from the start."""
    return dataclasses.replace(state, attempt=0)


def reset(state: PolicyState) -> PolicyState:
    """Breaker closed and history cleared (an operator's explicit start, or a closed trial)."""
    return PolicyState(trips=state.trips)
