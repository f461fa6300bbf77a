"""Typed access to talk projects, outlines and runs; rows become frozen dataclasses here."""

from __future__ import annotations

import dataclasses
import time

from bastion.store import Database, ReadTx, Row, WriteTx
from examples.pupitre.talk import queries as q

__all__ = [
    "Outline",
    "Project",
    "Run",
    "active_project",
    "add_outline",
    "add_run",
    "create_project",
    "delete_project",
    "get_project",
    "get_run",
    "latest_outline",
    "list_projects",
    "runs_for_project",
    "set_active_project",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Project:
    id: int
    title: str
    talk_number: int
    is_training: bool
    created_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class Outline:
    id: int
    project_id: int
    body: str
    updated_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    id: int
    project_id: int
    audio_path: str | None
    duration_s: float | None
    feedback_id: int | None
    created_at: float


def _project(row: Row) -> Project:
    return Project(row[0], row[1], row[2], bool(row[3]), row[4])


def _run(row: Row) -> Run:
    return Run(*row)


def create_project(tx: WriteTx, title: str, *, is_training: bool = False) -> int:
    return tx.insert(q.INSERT_PROJECT, (title, int(is_training), time.time()))


def delete_project(tx: WriteTx, project_id: int) -> None:
    """Runs, outlines and peer reviews go with it (ON DELETE CASCADE, migration 0007)."""
    tx.execute_one(q.DELETE_PROJECT, (project_id,), entity="talk", key=project_id)


def get_project(src: Database | ReadTx, project_id: int) -> Project | None:
    row = src.query_one(q.GET_PROJECT, (project_id,))
    return None if row is None else _project(row)


def list_projects(
    src: Database | ReadTx, *, before: int | None = None, limit: int = 50
) -> list[Project]:
    """Talks newest first; pass the last ``talk_number`` seen as ``before`` for the next page."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    start = 2**62 if before is None else before
    return [_project(r) for r in src.query(q.LIST_PROJECTS, (start, limit))]


def add_outline(tx: WriteTx, project_id: int, body: str) -> int:
    return tx.insert(q.UPSERT_OUTLINE, (project_id, body, time.time()))


def latest_outline(src: Database | ReadTx, project_id: int) -> Outline | None:
    row = src.query_one(q.OUTLINE_FOR, (project_id,))
    return None if row is None else Outline(*row)


def add_run(
    tx: WriteTx, project_id: int, audio_path: str | None, duration_s: float | None = None
) -> int:
    return tx.insert(q.INSERT_RUN, (project_id, audio_path, duration_s, time.time()))


def get_run(src: Database | ReadTx, run_id: int) -> Run | None:
    row = src.query_one(q.GET_RUN, (run_id,))
    return None if row is None else _run(row)


def runs_for_project(src: Database | ReadTx, project_id: int, limit: int = 50) -> list[Run]:
    return [_run(r) for r in src.query(q.RUNS_FOR_PROJECT, (project_id, limit))]


def set_active_project(tx: WriteTx, project_id: int | None) -> None:
    tx.execute(q.SET_ACTIVE_PROJECT, (project_id,))


def active_project(src: Database | ReadTx) -> int | None:
    value = src.query_one(q.ACTIVE_PROJECT)
    return None if value is None or value[0] is None else int(value[0])
