"""What the supervisor keeps in ``bastion.db``: service state, breaker, restart history, pids.

Tables come from the ``supervisor`` migrations namespace (``supervisor/migrations/*.sql``).
Each state transition is one write unit that updates the service row *and* emits the
``service.transition`` event, so the stored state and its history never disagree. The
methods are synchronous (they call the store's writer); the supervisor calls them through
its ordered journal task, off the event loop.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from typing import Any

from bastion.store import Database, WriteTx
from bastion.supervisor.migrations import (
    SUPERVISOR_MIGRATIONS,
    SUPERVISOR_NAMESPACE,
    supervisor_namespace,
)
from bastion.supervisor.policy import PolicyState
from bastion.supervisor.process import ProcRecord
from bastion.supervisor.states import BreakerState, ServiceState, check_transition

__all__ = ["EVENT_KIND", "Journal", "StoredService", "supervisor_namespace"]

EVENT_KIND = "service.transition"
S = ServiceState


@dataclasses.dataclass(frozen=True, slots=True)
class StoredService:
    """A service as stored: state, reason, since and its policy state."""

    name: str
    state: ServiceState
    reason: str
    since: float
    policy: PolicyState


class Journal:
    """Reads and writes the supervisor's tables. One per supervisor."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def migrate(self, backups_dir: Any = None) -> None:
        """Apply pending ``core`` (logs, events) and ``supervisor`` migrations; idempotent.
        A history that is the code's already is read without the migration engine (see
        :mod:`bastion.store.migrate.current`): the daemon's supervisor opens on a home its
        open has just migrated."""
        from bastion.domains import CORE_MIGRATIONS, CORE_NAMESPACE, core_namespace
        from bastion.store.migrate.current import history_is_current, package_history

        declared = [
            (CORE_NAMESPACE, package_history(CORE_MIGRATIONS)),
            (SUPERVISOR_NAMESPACE, package_history(SUPERVISOR_MIGRATIONS)),
        ]
        if history_is_current(self.db, declared):
            return
        from bastion.store.migrations import Migrator

        Migrator(self.db, backups_dir=backups_dir).migrate(
            [core_namespace(), supervisor_namespace()]
        )

    # --- service rows ---------------------------------------------------------------------

    def load(self) -> dict[str, StoredService]:
        """Every stored service row: state, reason, since, breaker and restart history."""
        rows = self.db.query(
            "SELECT name, state, reason, since, attempt, restarts, breaker, opened_at,"
            " open_timeout, half_open_successes, trips FROM supervisor_services"
        )
        found = {}
        for row in rows:
            policy = PolicyState(
                attempt=row[4],
                restarts=tuple(json.loads(row[5])),
                breaker=BreakerState(row[6]),
                opened_at=row[7],
                open_timeout=row[8],
                half_open_successes=row[9],
                trips=row[10],
            )
            found[row[0]] = StoredService(row[0], ServiceState(row[1]), row[2], row[3], policy)
        return found

    @staticmethod
    def _save(tx: WriteTx, snap: StoredService) -> None:
        p = snap.policy
        tx.execute(
            "INSERT INTO supervisor_services (name, state, reason, since, attempt, restarts,"
            " breaker, opened_at, open_timeout, half_open_successes, trips, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET state = excluded.state, reason = excluded.reason,"
            " since = excluded.since, attempt = excluded.attempt, restarts = excluded.restarts,"
            " breaker = excluded.breaker, opened_at = excluded.opened_at,"
            " open_timeout = excluded.open_timeout,"
            " half_open_successes = excluded.half_open_successes, trips = excluded.trips,"
            " updated_at = excluded.updated_at",
            (
                snap.name,
                snap.state.value,
                snap.reason,
                snap.since,
                p.attempt,
                json.dumps(list(p.restarts)),
                p.breaker.value,
                p.opened_at,
                p.open_timeout,
                p.half_open_successes,
                p.trips,
                time.time(),
            ),
        )

    def transition(
        self, snap: StoredService, old: ServiceState | None, extra: dict[str, Any] | None = None
    ) -> None:
        """Store the new state and its event in one write unit."""
        from bastion.domains.events import EventsRepo

        data: dict[str, Any] = {
            "from": old.value if old else None,
            "to": snap.state.value,
            "reason": snap.reason,
            "breaker": snap.policy.breaker.value,
            **(extra or {}),
        }

        def unit(tx: WriteTx) -> None:
            self._save(tx, snap)
            EventsRepo.emit_tx(tx, EVENT_KIND, snap.name, data, ts=snap.since)

        self.db.write(unit)

    def settle(self, row: StoredService, orphans_killed: int = 0) -> StoredService:
        """Bring a stored row left by the previous supervisor to a state this one can start
        from, recording each step as a transition (so the history has no gap). Called by
        ``Supervisor.open`` (in a worker thread) before anything starts.

        - An active row (a child may have been running: STARTING ... STOPPING) means the
          previous supervisor died without recording how that run ended (``kill -9``, the
          OOM killer, power loss): ``-> EXITED "supervisor died"``. Its child died with it
          (parent death) or was just swept; its status was seen by nobody, so none is
          recorded.
        - EXITED or BACKOFF (it died between a run and the next start; or a clean close
          during a backoff): ``-> STOPPED "supervisor restarted (was ...)"``, and
          ``start_all`` starts it again if it is an autostart service.
        - A half-open trial cut short: ``EXITED -> OPEN`` with its timeout elapsed, so
          ``start_all`` runs a new trial at once (the budget stays spent).
        - STOPPED, FAILED, OPEN: left as they are (OPEN resumes its wait).
        """
        snap = row

        def step(target: ServiceState, reason: str, **extra: Any) -> None:
            nonlocal snap
            old = snap.state
            check_transition(old, target, service=row.name)
            snap = dataclasses.replace(snap, state=target, reason=reason, since=time.time())
            self.transition(snap, old, extra or None)

        if row.state.is_active:
            # RUNNING/STARTING/UNHEALTHY/HALF_OPEN/STOPPING -> EXITED
            step(S.EXITED, "supervisor died", exit_code=None, orphans_killed=orphans_killed)
        if snap.state is not S.EXITED and snap.state is not S.BACKOFF:
            return snap
        if snap.policy.breaker is BreakerState.HALF_OPEN:
            snap = dataclasses.replace(
                snap, policy=dataclasses.replace(snap.policy, breaker=BreakerState.OPEN)
            )
            # EXITED -> OPEN
            step(S.OPEN, "half-open trial cut short (supervisor died): open, timeout elapsed")
            return snap
        # EXITED/BACKOFF -> STOPPED
        step(S.STOPPED, f"supervisor restarted (was {row.state.value})")
        return snap

    def save(self, snap: StoredService) -> None:
        """Store a service's row without an event (policy counters)."""
        self.db.write(lambda tx: self._save(tx, snap))

    def emit(self, kind: str, subject: str, data: dict[str, Any]) -> None:
        """Record an event about the supervisor or a service."""
        from bastion.domains.events import EventsRepo

        EventsRepo(self.db).emit(kind, subject, data)

    # --- processes ------------------------------------------------------------------------

    def record_start(
        self, service: str, rec: ProcRecord, started_at: float, secret_names: Sequence[str]
    ) -> int:
        """Record a started child (pid, create time, group, secret names); returns its row id."""
        return self.db.write(
            lambda tx: tx.insert(
                "INSERT INTO supervisor_processes (service, pid, create_time, pgid, started_at,"
                " secret_names) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    service,
                    rec.pid,
                    rec.create_time,
                    rec.pgid,
                    started_at,
                    json.dumps(sorted(secret_names)),
                ),
            )
        )

    def record_program(
        self, service: str, leader_id: int, rec: ProcRecord, started_at: float
    ) -> None:
        """``pipe`` mode: the program the shim (the recorded leader) runs. It is a descendant
        row with the leader's own ``started_at``, which is how :meth:`service_pids` tells it
        from descendants found later (their ``started_at`` is when they were seen)."""
        self.db.write(
            lambda tx: tx.execute(
                "INSERT INTO supervisor_processes (service, pid, create_time, pgid, parent_id,"
                " started_at) VALUES (?, ?, ?, ?, ?, ?)",
                (service, rec.pid, rec.create_time, rec.pgid, leader_id, started_at),
            )
        )

    def service_pids(self) -> dict[str, ProcRecord]:
        """Each service's own process as the supervisor reports it (``status().pid``): the
        program of its live run -- the recorded leader, or in ``pipe`` mode the program the
        shim runs -- never a descendant. Rows not recorded as ended; the caller checks that
        the process still lives (``process.alive``): a crashed supervisor ends no rows."""
        rows = self.db.query(
            "SELECT l.service, coalesce(p.pid, l.pid), coalesce(p.create_time, l.create_time),"
            " coalesce(p.pgid, l.pgid) FROM supervisor_processes AS l"
            " LEFT JOIN supervisor_processes AS p"
            "   ON p.parent_id = l.id AND p.started_at = l.started_at"
            " WHERE l.parent_id IS NULL AND l.ended_at IS NULL ORDER BY l.id"
        )
        return {r[0]: ProcRecord(r[1], r[2], r[3]) for r in rows}

    def record_descendants(self, service: str, parent_id: int, recs: Sequence[ProcRecord]) -> None:
        """Record processes seen under a child (pid + create time) for a later sweep."""
        now = time.time()
        self.db.write(
            lambda tx: tx.executemany(
                "INSERT INTO supervisor_processes (service, pid, create_time, pgid, parent_id,"
                " started_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(service, r.pid, r.create_time, r.pgid, parent_id, now) for r in recs],
            )
        )

    def record_end(self, process_id: int, exit_code: int | None) -> None:
        """The child and (after its stop swept them) its recorded descendants have ended."""
        now = time.time()

        def unit(tx: WriteTx) -> None:
            tx.execute(
                "UPDATE supervisor_processes SET ended_at = ?, exit_code = ? WHERE id = ?",
                (now, exit_code, process_id),
            )
            tx.execute(
                "UPDATE supervisor_processes SET ended_at = ? WHERE parent_id = ? AND ended_at IS NULL",
                (now, process_id),
            )

        self.db.write(unit)

    def live_records(self) -> list[tuple[int, str, ProcRecord]]:
        """Processes not recorded as ended: a crashed predecessor's children and descendants."""
        rows = self.db.query(
            "SELECT id, service, pid, create_time, pgid FROM supervisor_processes"
            " WHERE ended_at IS NULL ORDER BY id"
        )
        return [(r[0], r[1], ProcRecord(r[2], r[3], r[4])) for r in rows]

    def close_records(self, ids: Sequence[int]) -> None:
        """Mark process rows as ended (swept or found gone)."""
        now = time.time()
        self.db.write(
            lambda tx: tx.executemany(
                "UPDATE supervisor_processes SET ended_at = ? WHERE id = ?",
                [(now, i) for i in ids],
            )
        )

    def last_start(self, service: str) -> tuple[float, list[str]] | None:
        """When the service last started and the secret names injected then."""
        row = self.db.query_one(
            "SELECT started_at, secret_names FROM supervisor_processes"
            " WHERE service = ? AND parent_id IS NULL ORDER BY id DESC LIMIT 1",
            (service,),
        )
        return (row[0], json.loads(row[1])) if row else None
