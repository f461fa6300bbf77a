"""Backoff, restart window and breaker as pure functions driven by a fake clock."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from bastion.supervisor.policy import (
    Action,
    Decision,
    PolicyState,
    backoff_delay,
    on_failure,
    on_healthy,
    on_open_elapsed,
    on_stable,
    reset,
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


# --- exact transitions, boundaries and reasons (mutation testing, #23) -----------------------


class EdgeRng(random.Random):
    """An RNG whose ``uniform`` returns one end of the band and records what it was asked."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high
        self.asked: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.asked.append((a, b))
        return b if self.high else a


def test_a_new_state_is_closed_with_no_history() -> None:
    state = PolicyState()
    assert (state.attempt, state.restarts, state.breaker) == (0, (), BreakerState.CLOSED)
    assert (state.opened_at, state.open_timeout) == (None, 0.0)
    assert (state.half_open_successes, state.trips) == (0, 0)
    assert state.open_until() is None


def test_open_until_only_for_an_open_breaker_with_a_time() -> None:
    opened = PolicyState(breaker=BreakerState.OPEN, opened_at=100.0, open_timeout=30.0)
    assert opened.open_until() == 130.0
    assert PolicyState(breaker=BreakerState.OPEN, opened_at=None).open_until() is None
    half = PolicyState(breaker=BreakerState.HALF_OPEN, opened_at=100.0, open_timeout=30.0)
    assert half.open_until() is None


def test_jitter_moves_the_delay_by_exactly_its_fraction_and_stays_capped() -> None:
    spec = RestartSpec(jitter=0.25, backoff_initial_s=1.0, backoff_factor=2.0, backoff_max_s=60.0)
    high, low = EdgeRng(high=True), EdgeRng(high=False)
    assert backoff_delay(spec, 2, high) == 5.0
    assert backoff_delay(spec, 2, low) == 3.0
    assert high.asked == [(-0.25, 0.25)]
    # At the cap the upper jitter is cut back to the cap; the lower one still spreads.
    assert backoff_delay(spec, 10, EdgeRng(high=True)) == 60.0
    assert backoff_delay(spec, 10, EdgeRng(high=False)) == 45.0
    # Full jitter at its low end reaches zero and never goes below it.
    assert backoff_delay(RestartSpec(jitter=1.0), 0, EdgeRng(high=False)) == 0.0
    # No RNG, or no jitter: the plain delay, and the RNG is not consulted.
    assert backoff_delay(spec, 2) == 4.0
    unused = EdgeRng(high=True)
    assert backoff_delay(RestartSpec(jitter=0.0), 2, unused) == 4.0
    assert unused.asked == []


def test_backoff_of_a_negative_attempt_is_the_initial_delay() -> None:
    spec = RestartSpec(jitter=0.0, backoff_initial_s=3.0)
    assert backoff_delay(spec, -5) == 3.0
    assert backoff_delay(spec, 0) == 3.0
    assert backoff_delay(spec, 1) == 6.0


def test_clean_and_failed_exits_that_do_not_restart_say_why_and_change_nothing() -> None:
    state = PolicyState(attempt=2, restarts=(5.0,))
    for policy, ok, action, reason in [
        ("on-failure", True, Action.STOP, "exited cleanly; restart=on-failure"),
        ("never", True, Action.STOP, "exited cleanly; restart=never"),
        ("never", False, Action.FAIL, "failed; restart=never"),
    ]:
        spec = RestartSpec(policy=policy, jitter=0.0)  # type: ignore[arg-type]
        new, decision = on_failure(state, spec, BREAKER, now=10.0, exit_ok=ok)
        assert new == state
        assert (decision.action, decision.delay, decision.reason) == (action, 0.0, reason)


def test_a_restart_records_its_time_and_says_which_of_the_budget_it_is() -> None:
    state, decision = on_failure(PolicyState(), SEED001, BREAKER, now=1000.0, exit_ok=False)
    assert state == PolicyState(attempt=1, restarts=(1000.0,))
    assert decision == Decision(Action.RESTART, 1.0, "restart 1/3 after 1s backoff")
    state, decision = on_failure(state, SEED001, BREAKER, now=1001.5, exit_ok=False)
    assert state == PolicyState(attempt=2, restarts=(1000.0, 1001.5))
    assert decision == Decision(Action.RESTART, 2.0, "restart 2/3 after 2s backoff")


def test_the_window_boundary_a_restart_exactly_window_old_no_longer_counts() -> None:
    spec = RestartSpec(jitter=0.0, max_restarts=1, window_s=300.0)
    old = PolicyState(attempt=1, restarts=(1000.0,))
    # 299.9 s later the one restart still counts: the budget is spent.
    _, decision = on_failure(old, spec, BREAKER, now=1299.9, exit_ok=False)
    assert decision.action is Action.OPEN
    # Exactly 300 s later it has left the window, and is dropped from the history.
    state, decision = on_failure(old, spec, BREAKER, now=1300.0, exit_ok=False)
    assert decision.action is Action.RESTART
    assert state.restarts == (1300.0,)


def test_a_spent_budget_opens_the_breaker_now_and_keeps_only_recent_restarts() -> None:
    state = PolicyState(attempt=3, restarts=(1.0, 900.0, 950.0, 990.0), trips=2)
    new, decision = on_failure(state, SEED001, BREAKER, now=1000.0, exit_ok=False)
    assert new == PolicyState(
        attempt=3,
        restarts=(900.0, 950.0, 990.0),
        breaker=BreakerState.OPEN,
        opened_at=1000.0,
        open_timeout=30.0,
        half_open_successes=0,
        trips=3,
    )
    assert decision == Decision(
        Action.OPEN, 30.0, "3 restarts in 300s spent the budget; breaker open 30s"
    )


def test_a_zero_budget_opens_the_breaker_on_the_first_failure() -> None:
    spec = RestartSpec(jitter=0.0, max_restarts=0)
    new, decision = on_failure(PolicyState(), spec, BREAKER, now=5.0, exit_ok=False)
    assert decision.action is Action.OPEN
    assert new.breaker is BreakerState.OPEN


def test_a_failed_trial_reopens_from_at_least_the_configured_timeout() -> None:
    breaker = BreakerSpec(open_timeout_s=30, open_timeout_factor=3, open_timeout_max_s=1000)
    # A stored timeout below the configured one (the config grew since) starts from the config.
    state = PolicyState(
        breaker=BreakerState.HALF_OPEN, open_timeout=5.0, half_open_successes=1, trips=1
    )
    new, decision = on_failure(state, SEED001, breaker, now=50.0, exit_ok=False)
    assert decision == Decision(Action.OPEN, 90.0, "half-open trial failed; open 90s")
    assert new == PolicyState(
        breaker=BreakerState.OPEN,
        opened_at=50.0,
        open_timeout=90.0,
        half_open_successes=0,
        trips=2,
    )
    # A clean exit of a half-open trial under restart=always is a failed trial too.
    always = RestartSpec(policy="always", jitter=0.0)
    _, decision = on_failure(state, always, breaker, now=50.0, exit_ok=True)
    assert decision.action is Action.OPEN


def test_open_elapsed_starts_a_trial_with_no_successes_counted() -> None:
    state = PolicyState(breaker=BreakerState.OPEN, opened_at=1.0, half_open_successes=3, trips=1)
    half = on_open_elapsed(state)
    assert half.breaker is BreakerState.HALF_OPEN
    assert half.half_open_successes == 0
    assert (half.opened_at, half.trips) == (1.0, 1)


def test_healthy_checks_count_up_to_the_threshold_then_close_and_forget() -> None:
    breaker = BreakerSpec(success_threshold=3)
    state = PolicyState(
        attempt=4,
        restarts=(1.0, 2.0),
        breaker=BreakerState.HALF_OPEN,
        opened_at=2.0,
        open_timeout=60.0,
        trips=2,
    )
    state, closed = on_healthy(state, breaker)
    assert (state.half_open_successes, closed) == (1, False)
    state, closed = on_healthy(state, breaker)
    assert (state.half_open_successes, closed) == (2, False)
    assert state.breaker is BreakerState.HALF_OPEN
    state, closed = on_healthy(state, breaker)
    assert closed
    # Closed: everything forgotten but how many times it tripped.
    assert state == PolicyState(trips=2)
    # A threshold of one closes on the first healthy check.
    half = PolicyState(breaker=BreakerState.HALF_OPEN)
    assert on_healthy(half, BreakerSpec(success_threshold=1)) == (PolicyState(), True)


def test_a_stable_run_resets_only_the_backoff() -> None:
    state = PolicyState(attempt=5, restarts=(1.0, 2.0), trips=1)
    assert on_stable(state) == PolicyState(attempt=0, restarts=(1.0, 2.0), trips=1)


def test_reset_clears_the_history_but_keeps_the_trip_count() -> None:
    state = PolicyState(
        attempt=5, restarts=(1.0,), breaker=BreakerState.OPEN, opened_at=1.0, trips=4
    )
    assert reset(state) == PolicyState(trips=4)


def test_a_restart_delay_is_jittered_with_the_callers_rng() -> None:
    spec = RestartSpec(jitter=0.5)
    rng = EdgeRng(high=True)
    _, decision = on_failure(PolicyState(), spec, BREAKER, now=1.0, exit_ok=False, rng=rng)
    assert decision.delay == 1.5
    assert rng.asked == [(-0.5, 0.5)]


def test_a_breaker_opened_by_the_budget_counts_no_trial_successes() -> None:
    # The state is a stored row: whatever count an interrupted trial left in it, the breaker
    # that opens now must need the full success_threshold again.
    state = PolicyState(restarts=(1.0, 2.0, 3.0), half_open_successes=1)
    new, decision = on_failure(state, SEED001, BREAKER, now=4.0, exit_ok=False)
    assert decision.action is Action.OPEN
    assert new.half_open_successes == 0
    half = on_open_elapsed(new)
    assert on_healthy(half, BREAKER)[1] is False
