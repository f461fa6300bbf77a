"""The state table: every state reachable, transitions checked, docs/states.md current."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.errors import InvalidTransition
from bastion.supervisor.states import (
    BREAKER_TRANSITIONS,
    TRANSITIONS,
    BreakerState,
    ServiceState,
    check_transition,
    render_states_markdown,
)

ROOT = Path(__file__).resolve().parents[2]


def test_every_state_has_a_row_and_is_reachable() -> None:
    assert set(TRANSITIONS) == set(ServiceState)
    reachable = {ServiceState.STOPPED}
    frontier = [ServiceState.STOPPED]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    assert reachable == set(ServiceState)
    assert set(BREAKER_TRANSITIONS) == set(BreakerState)


def test_every_state_can_get_back_to_stopped() -> None:
    for start in ServiceState:
        seen, frontier = {start}, [start]
        while frontier:
            for nxt in TRANSITIONS[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert ServiceState.STOPPED in seen, start


def test_check_transition_refuses_an_edge_not_in_the_table() -> None:
    """The refusal names the service, the edge and every state allowed from there, word for
    word; its details carry the stored values. A caller naming no service gets ''."""
    check_transition(ServiceState.STOPPED, ServiceState.STARTING)
    with pytest.raises(InvalidTransition) as info:
        check_transition(ServiceState.BACKOFF, ServiceState.RUNNING, service="speech")
    assert info.value.message == (
        "service 'speech': BACKOFF -> RUNNING is not allowed (from BACKOFF: STARTING, STOPPED)"
    )
    assert info.value.details == {"service": "speech", "current": "backoff", "target": "running"}
    with pytest.raises(InvalidTransition) as info:
        check_transition(ServiceState.STOPPED, ServiceState.RUNNING)
    assert info.value.message == (
        "service '': STOPPED -> RUNNING is not allowed (from STOPPED: STARTING)"
    )
    assert info.value.details == {"service": "", "current": "stopped", "target": "running"}


def test_open_is_not_a_dead_end_like_fatal() -> None:
    # supervisord's FATAL needs an operator; OPEN always leads to a trial start by itself.
    assert ServiceState.HALF_OPEN in TRANSITIONS[ServiceState.OPEN]


def test_docs_states_md_is_current() -> None:
    committed = (ROOT / "docs" / "states.md").read_text(encoding="utf-8")
    assert committed == render_states_markdown(), "run `make docs` (python -m bastion._docs)"
    for state in ServiceState:
        assert f"`{state.name}`" in committed
