"""Backoff, restart window and breaker as pure functions driven by a fake clock."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from bastion.supervisor.policy import (
    Action,
    PolicyState,
    backoff_delay,
    on_failure,
    on_healthy,
    on_open_elapsed,
    on_stable,
)
from bastion.supervisor.spec import BreakerSpec, RestartSpec
from bastion.supervisor.states import BreakerState

SEED001 = RestartSpec(jitter=0.0)  # 3 in 300 s, 1 s -> 60 s doubling
BREAKER = BreakerSpec()  # open 30 s, 2 successes


class FakeClock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def test_seed001_backoff_sequence_without_jitter() -> None:
    spec = RestartSpec(jitter=0.0, max_restarts=100)
    delays = [backoff_delay(spec, n) for n in range(8)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]


@given(attempt=st.integers(0, 40), seed=st.integers(0, 2**32 - 1))
def test_jitter_stays_within_its_band_and_the_cap(attempt: int, seed: int) -> None:
    spec = RestartSpec(jitter=0.25)
    plain = backoff_delay(RestartSpec(jitter=0.0), attempt)
    jittered = backoff_delay(spec, attempt, random.Random(seed))
    assert plain * 0.75 - 1e-9 <= jittered <= min(plain * 1.25, spec.backoff_max_s) + 1e-9


def test_jitter_spreads_delays() -> None:
    rng = random.Random(7)
    spec = RestartSpec(jitter=0.2)
    assert len({round(backoff_delay(spec, 2, rng), 6) for _ in range(20)}) > 10


def test_budget_spent_opens_the_breaker_then_half_open_then_closed() -> None:
    clock = FakeClock()
    state = PolicyState()
    actions = []
    for _ in range(4):
        state, decision = on_failure(state, SEED001, BREAKER, now=clock.advance(1), exit_ok=False)
        actions.append((decision.action, decision.delay))
    assert actions == [
        (Action.RESTART, 1.0),
        (Action.RESTART, 2.0),
        (Action.RESTART, 4.0),
        (Action.OPEN, 30.0),
    ]
    assert state.breaker is BreakerState.OPEN
    assert state.open_until() == clock.now + 30
    state = on_open_elapsed(state)
    assert state.breaker is BreakerState.HALF_OPEN
    state, closed = on_healthy(state, BREAKER)
    assert not closed
    assert state.breaker is BreakerState.HALF_OPEN
    state, closed = on_healthy(state, BREAKER)
    assert closed
    assert state.breaker is BreakerState.CLOSED
    assert state.restarts == ()
    assert state.attempt == 0
    assert state.trips == 1


def test_failure_threshold_opens_on_the_nth_consecutive_failure() -> None:
    # Seed 001 counts the breaker's failures apart from restarts: the 3rd failure opens it.
    clock = FakeClock()
    breaker = BreakerSpec(failure_threshold=3)
    state = PolicyState()
    actions = []
    for _ in range(3):
        state, decision = on_failure(state, SEED001, breaker, now=clock.advance(1), exit_ok=False)
        actions.append((decision.action, decision.delay))
    assert actions == [(Action.RESTART, 1.0), (Action.RESTART, 2.0), (Action.OPEN, 30.0)]
    assert decision.reason == (
        "3 consecutive failures reached breaker.failure_threshold=3; breaker open 30s"
    )
    assert state.breaker is BreakerState.OPEN
    assert state.trips == 1


def test_failure_threshold_counts_only_failures_not_forgiven_by_a_stable_run() -> None:
    clock = FakeClock()
    breaker = BreakerSpec(failure_threshold=2)
    restart = RestartSpec(jitter=0.0, max_restarts=100)
    state = PolicyState()
    for _ in range(5):  # each failure follows a run healthy for reset_after_s: never 2 in a row
        state, decision = on_failure(state, restart, breaker, now=clock.advance(100), exit_ok=False)
        assert decision.action is Action.RESTART
        state = on_stable(state)
    state, decision = on_failure(state, restart, breaker, now=clock.advance(1), exit_ok=False)
    assert decision.action is Action.RESTART
    state, decision = on_failure(state, restart, breaker, now=clock.advance(1), exit_ok=False)
    assert decision.action is Action.OPEN  # the second one in a row


def test_failure_threshold_zero_leaves_the_restart_budget_in_charge() -> None:
    assert BreakerSpec().failure_threshold == 0
    clock = FakeClock()
    state = PolicyState()
    actions = []
    for _ in range(4):
        state, decision = on_failure(state, SEED001, BREAKER, now=clock.advance(1), exit_ok=False)
        actions.append(decision.action)
    assert actions == [Action.RESTART] * 3 + [Action.OPEN]


def test_reopen_factor_one_keeps_the_open_timeout() -> None:
    clock = FakeClock()
    breaker = BreakerSpec(open_timeout_s=30, open_timeout_factor=1)
    state = PolicyState(breaker=BreakerState.OPEN, opened_at=clock.now, open_timeout=30)
    timeouts = []
    for _ in range(3):
        state = on_open_elapsed(state)
        state, decision = on_failure(state, SEED001, breaker, now=clock.advance(200), exit_ok=False)
        timeouts.append(decision.delay)
    assert timeouts == [30, 30, 30]


def test_failed_trial_reopens_with_a_longer_capped_timeout() -> None:
    clock = FakeClock()
    breaker = BreakerSpec(open_timeout_s=30, open_timeout_factor=2, open_timeout_max_s=100)
    state = PolicyState(breaker=BreakerState.OPEN, opened_at=clock.now, open_timeout=30)
    timeouts = []
    for _ in range(4):
        state = on_open_elapsed(state)
        state, decision = on_failure(state, SEED001, breaker, now=clock.advance(200), exit_ok=False)
        assert decision.action is Action.OPEN
        timeouts.append(decision.delay)
    assert timeouts == [60, 100, 100, 100]
    assert state.trips == 4


def test_restarts_outside_the_window_do_not_count() -> None:
    clock = FakeClock()
    state = PolicyState()
    for _ in range(10):
        state, decision = on_failure(state, SEED001, BREAKER, now=clock.advance(101), exit_ok=False)
        assert decision.action is Action.RESTART  # at most 3 restarts fall in any 300 s
        state = on_stable(state)


def test_stable_run_resets_the_backoff() -> None:
    clock = FakeClock()
    state = PolicyState()
    state, _ = on_failure(state, SEED001, BREAKER, now=clock.advance(1), exit_ok=False)
    state, second = on_failure(state, SEED001, BREAKER, now=clock.advance(1), exit_ok=False)
    assert second.delay == 2.0
    state = on_stable(state)
    state, third = on_failure(state, SEED001, BREAKER, now=clock.advance(1), exit_ok=False)
    assert third.delay == 1.0


def test_policies_on_clean_and_failed_exits() -> None:
    now = 1.0
    for policy, ok, expected in [
        ("on-failure", True, Action.STOP),
        ("on-failure", False, Action.RESTART),
        ("always", True, Action.RESTART),
        ("never", True, Action.STOP),
        ("never", False, Action.FAIL),
    ]:
        spec = RestartSpec(policy=policy, jitter=0.0)  # type: ignore[arg-type]
        _, decision = on_failure(PolicyState(), spec, BREAKER, now=now, exit_ok=ok)
        assert decision.action is expected, (policy, ok)


def test_healthy_checks_outside_half_open_change_nothing() -> None:
    state = PolicyState(attempt=2, restarts=(1.0,))
    assert on_healthy(state, BREAKER) == (state, False)
    assert on_open_elapsed(state) == state
