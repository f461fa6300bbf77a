"""The lifecycle of a supervised service: one Enum and the table of allowed transitions.

Every state change goes through :func:`check_transition`, so a transition missing from
``TRANSITIONS`` is a bug that raises ``InvalidTransition`` instead of a silent jump. The
breaker has its own, smaller machine (:class:`BreakerState`). ``docs/states.md`` is rendered
from these tables by :func:`render_states_markdown` and a test keeps it current.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from bastion.errors import InvalidTransition

__all__ = [
    "BREAKER_TRANSITIONS",
    "TRANSITIONS",
    "BreakerState",
    "ServiceState",
    "check_transition",
    "render_states_markdown",
]


class ServiceState(enum.Enum):
    """Where a service is in its lifecycle (values are the stored and wire form)."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    UNHEALTHY = "unhealthy"
    BACKOFF = "backoff"
    OPEN = "open"
    HALF_OPEN = "half_open"
    STOPPING = "stopping"
    EXITED = "exited"
    FAILED = "failed"

    @property
    def is_active(self) -> bool:
        """A child process may exist in this state."""
        return self in _ACTIVE


_ACTIVE = frozenset(
    {
        ServiceState.STARTING,
        ServiceState.RUNNING,
        ServiceState.UNHEALTHY,
        ServiceState.HALF_OPEN,
        ServiceState.STOPPING,
    }
)

_S = ServiceState

#: state -> {allowed next state: why that edge exists}
TRANSITIONS: Mapping[ServiceState, Mapping[ServiceState, str]] = {
    _S.STOPPED: {_S.STARTING: "start requested (operator, autostart)"},
    _S.STARTING: {
        _S.RUNNING: "startup probe passed (or no probe: spawned)",
        _S.UNHEALTHY: "startup probe failed past its threshold",
        _S.EXITED: "child exited during startup (or the supervisor died: recorded by the next)",
        _S.STOPPING: "stop requested",
        _S.FAILED: "could not spawn (program, cwd, or a secret missing)",
    },
    _S.RUNNING: {
        _S.UNHEALTHY: "liveness probe failed past its threshold",
        _S.EXITED: "child exited (or the supervisor died: recorded by the next)",
        _S.STOPPING: "stop or restart requested",
    },
    _S.UNHEALTHY: {
        _S.STOPPING: "unhealthy child is stopped before a restart",
        _S.EXITED: "child exited (or the supervisor died: recorded by the next)",
    },
    _S.HALF_OPEN: {
        _S.RUNNING: "success_threshold healthy checks: breaker closed",
        _S.UNHEALTHY: "probe failed during the half-open trial",
        _S.EXITED: "child exited during the half-open trial (or the supervisor died)",
        _S.STOPPING: "stop requested",
        _S.FAILED: "could not spawn the half-open trial",
    },
    _S.STOPPING: {
        _S.STOPPED: "stopped on request",
        _S.BACKOFF: "stopped for a restart; waiting the backoff delay",
        _S.OPEN: "stopped after a failure that spent the restart budget",
        _S.FAILED: "stopped after a failure; restart policy forbids a restart",
        _S.EXITED: "the supervisor died during the stop (recorded by the next)",
    },
    _S.EXITED: {
        _S.BACKOFF: "restart policy allows a restart; waiting the backoff delay",
        _S.OPEN: "restart budget spent, or a half-open trial failed or was cut short: breaker open",
        _S.STOPPED: "clean exit and policy on-failure/never; or the supervisor restarted",
        _S.FAILED: "failed exit and policy never",
    },
    _S.BACKOFF: {
        _S.STARTING: "backoff delay elapsed",
        _S.STOPPED: "stop requested, or the supervisor restarted",
    },
    _S.OPEN: {
        _S.HALF_OPEN: "open timeout elapsed: one trial start",
        _S.STOPPED: "stop requested",
        _S.STARTING: "operator start: breaker reset",
    },
    _S.FAILED: {
        _S.STARTING: "operator start",
        _S.STOPPED: "stop requested",
    },
}


class BreakerState(enum.Enum):
    """The circuit breaker in front of restarts (seed 001: closed -> open -> half-open)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_B = BreakerState

BREAKER_TRANSITIONS: Mapping[BreakerState, Mapping[BreakerState, str]] = {
    _B.CLOSED: {_B.OPEN: "a failure found the restart budget spent"},
    _B.OPEN: {
        _B.HALF_OPEN: "open timeout elapsed",
        _B.CLOSED: "operator reset (explicit start)",
    },
    _B.HALF_OPEN: {
        _B.CLOSED: "success_threshold healthy checks in a row",
        _B.OPEN: "the trial failed: re-open with a longer timeout (capped)",
    },
}


def check_transition(current: ServiceState, target: ServiceState, *, service: str = "") -> None:
    """Raise ``InvalidTransition`` unless ``current -> target`` is in the table."""
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(s.name for s in TRANSITIONS[current]) or "none"
        raise InvalidTransition(
            f"service {service!r}: {current.name} -> {target.name} is not allowed "
            f"(from {current.name}: {allowed})",
            service=service,
            current=current.value,
            target=target.value,
        )


def _table(table: Mapping[enum.Enum, Mapping[enum.Enum, str]]) -> list[str]:
    lines = ["| from | to | when |", "|---|---|---|"]
    for src, targets in table.items():
        for dst, why in targets.items():
            lines.append(f"| `{src.name}` | `{dst.name}` | {why} |")
    return lines


def render_states_markdown() -> str:
    """The text of ``docs/states.md``; a test fails when the committed file differs."""
    lines = [
        "# Service states",
        "",
        "<!-- Generated from src/bastion/supervisor/states.py by `python -m bastion._docs`; "
        "do not edit. -->",
        "",
        "Every supervised service is in exactly one of these states. Each transition is",
        'written to the `events` table (kind `"service.transition"`) with its reason.',
        "A transition not listed here raises `InvalidTransition`.",
        "",
        "A supervisor that starts after its predecessor died (`kill -9`, OOM, power loss)",
        "first ends each run the dead one left open: an active state `-> EXITED` with the",
        'reason "supervisor died" (no exit code: nobody saw it), then `EXITED -> STOPPED`',
        "(or `-> OPEN` for a half-open trial), so a service's history has no gap.",
        "",
        "| state | child may be running |",
        "|---|---|",
    ]
    lines.extend(f"| `{s.name}` | {'yes' if s.is_active else 'no'} |" for s in ServiceState)
    lines += ["", "## Service transitions", ""]
    lines.extend(_table(TRANSITIONS))  # type: ignore[arg-type]
    lines += [
        "",
        "## Breaker",
        "",
        "The breaker opens when a failure finds the restart budget (`restart.max_restarts` in",
        "`restart.window_s`) spent, or when it is the `breaker.failure_threshold`th failure in",
        "a row (not separated by a run healthy for `restart.reset_after_s`; 0, the default,",
        "leaves the budget alone in charge). After `breaker.open_timeout_s` one trial start runs",
        "(HALF_OPEN); `breaker.success_threshold` healthy checks close it, a failure re-opens",
        "it with the timeout multiplied by `breaker.open_timeout_factor` (1 keeps it; capped at",
        "`breaker.open_timeout_max_s`). Breaker state and restart history are stored in",
        "`bastion.db` and survive a supervisor restart.",
        "",
    ]
    lines.extend(_table(BREAKER_TRANSITIONS))  # type: ignore[arg-type]
    lines.append("")
    return "\n".join(lines)
