"""pupitre's two migration namespaces, registered through bastion's public migration API.

* ``pupitre_global``: the global database (the list of workspace profiles), SQL files in
  ``global_db/``.
* ``pupitre``: every profile database, modelled on LePupitre's ordered steps ``0001``-``0007``.
  Plain DDL lives in SQL files (``profile/``); the steps SQL alone cannot express safely are
  Python: a backfill (0004), a table rebuild (0005, SQLite cannot drop a NOT NULL), and the
  foreign keys added to legacy data (0007) with a declared orphan policy per relation, and
  the ON UPDATE rule of every relation (0008, see :data:`RELATIONS`).

Never edit a migration once it shipped: bastion refuses a database whose applied checksum no
longer matches (``MigrationChecksumMismatch``). Add a new one instead.
"""

from __future__ import annotations

import dataclasses
import json
from importlib.resources import as_file, files

from bastion.store import WriteTx
from bastion.store.migrations import (
    Migration,
    Namespace,
    OrphanAction,
    OrphanPolicy,
    rebuild_table,
)

__all__ = [
    "FK_ORPHAN_POLICIES",
    "FK_TABLES_0008",
    "GLOBAL_NAMESPACE",
    "PROFILE_NAMESPACE",
    "RELATIONS",
    "Relation",
    "global_namespace",
    "profile_migrations",
    "profile_namespace",
]

GLOBAL_NAMESPACE = "pupitre_global"
PROFILE_NAMESPACE = "pupitre"


def global_namespace() -> Namespace:
    return Namespace.from_package(GLOBAL_NAMESPACE, "examples.pupitre.migrations.global_db")


def _sql(file_name: str) -> Migration:
    with as_file(files("examples.pupitre.migrations.profile") / file_name) as path:
        return Migration.from_file(path)


def backfill_talk_numbers(tx: WriteTx) -> None:
    """0004: number every talk 1, 2, 3... in creation order (ties by id), then keep it unique.

    The legacy app computed the number on every read; storing it makes the talk list a plain
    indexed read and lets a new talk take ``max + 1``.
    """
    tx.execute("ALTER TABLE talk_projects ADD COLUMN talk_number INTEGER")
    tx.execute(
        "UPDATE talk_projects SET talk_number = ("
        " SELECT count(*) FROM talk_projects AS p"
        " WHERE p.created_at < talk_projects.created_at"
        " OR (p.created_at = talk_projects.created_at AND p.id <= talk_projects.id))"
    )
    tx.execute("CREATE UNIQUE INDEX idx_talk_projects_number ON talk_projects (talk_number)")


RUNS_AUDIO_NULLABLE = """CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL,
    audio_path TEXT,
    duration_s REAL,
    feedback_id INTEGER,
    created_at REAL NOT NULL
)"""

#: 0007: the new definition of every table that gains foreign keys, with its ON DELETE rules.
FK_TABLES: dict[str, str] = {
    "talk_outlines": """CREATE TABLE talk_outlines (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES talk_projects (id) ON DELETE CASCADE ON UPDATE CASCADE,
    body TEXT NOT NULL,
    updated_at REAL NOT NULL
)""",
    "runs": """CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES talk_projects (id) ON DELETE CASCADE ON UPDATE CASCADE,
    audio_path TEXT,
    duration_s REAL,
    feedback_id INTEGER REFERENCES auto_feedback (id) ON DELETE SET NULL,
    created_at REAL NOT NULL
)""",
    "quest_attempts": """CREATE TABLE quest_attempts (
    id INTEGER PRIMARY KEY,
    quest_id TEXT NOT NULL REFERENCES quests (id) ON DELETE CASCADE ON UPDATE CASCADE,
    score REAL,
    feedback_id INTEGER REFERENCES auto_feedback (id) ON DELETE SET NULL,
    created_at REAL NOT NULL
)""",
    "feedback_notes": """CREATE TABLE feedback_notes (
    id INTEGER PRIMARY KEY,
    feedback_id INTEGER NOT NULL REFERENCES auto_feedback (id) ON DELETE CASCADE,
    body TEXT NOT NULL
)""",
    "peer_reviews": """CREATE TABLE peer_reviews (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    reviewer TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL
)""",
    "active_state": """CREATE TABLE active_state (
    key TEXT PRIMARY KEY,
    project_id INTEGER REFERENCES talk_projects (id) ON DELETE SET NULL
)""",
}

#: What happens to legacy rows whose parent is gone, per relation. Parents before children:
#: a run moved to lost-and-found orphans its peer reviews, which the later policy then moves.
FK_ORPHAN_POLICIES: tuple[OrphanPolicy, ...] = (
    # A run is the user's recording: keep it in bastion's lost-and-found table, not deleted.
    OrphanPolicy("runs", "project_id", "talk_projects", OrphanAction.LOST_AND_FOUND),
    # An outline without its talk is unreachable in the UI and has no value alone.
    OrphanPolicy("talk_outlines", "project_id", "talk_projects", OrphanAction.DELETE),
    OrphanPolicy("quest_attempts", "quest_id", "quests", OrphanAction.DELETE),
    # A dangling link to feedback means "no feedback"; the run or attempt itself is kept.
    OrphanPolicy("runs", "feedback_id", "auto_feedback", OrphanAction.SET_NULL),
    OrphanPolicy("quest_attempts", "feedback_id", "auto_feedback", OrphanAction.SET_NULL),
    OrphanPolicy("feedback_notes", "feedback_id", "auto_feedback", OrphanAction.DELETE),
    # A peer review is someone else's work: lost-and-found, like runs.
    OrphanPolicy("peer_reviews", "run_id", "runs", OrphanAction.LOST_AND_FOUND),
    OrphanPolicy("active_state", "project_id", "talk_projects", OrphanAction.SET_NULL),
)


def add_foreign_keys(tx: WriteTx) -> None:
    """0007: rebuild each table with its FOREIGN KEYs (SQLite's 12-step procedure, indexes
    re-created). Orphans were normalized by the declared policies before this runs, and each
    rebuild ends with ``PRAGMA foreign_key_check`` on its table."""
    for table, create_sql in FK_TABLES.items():
        rebuild_table(tx, table, create_sql)


@dataclasses.dataclass(frozen=True, slots=True)
class Relation:
    """One foreign key of the profile schema and what a change of its parent does."""

    table: str
    column: str
    parent: str
    on_delete: str
    on_update: str
    why: str


#: The eight relations of the profile schema, each with its ON DELETE and ON UPDATE rule
#: (seed 004 workstream 3: "define ON DELETE and ON UPDATE behavior per relation"). Since
#: 0008 the schema declares exactly these (a test compares them with PRAGMA
#: foreign_key_list and exercises each rule on real rows).
RELATIONS: tuple[Relation, ...] = (
    Relation(
        "talk_outlines",
        "project_id",
        "talk_projects",
        "CASCADE",
        "CASCADE",
        "an outline belongs to its talk: it goes with it and follows a renumbering",
    ),
    Relation(
        "runs",
        "project_id",
        "talk_projects",
        "CASCADE",
        "CASCADE",
        "a run is a rehearsal of one talk: deleting the talk deletes its runs",
    ),
    Relation(
        "runs",
        "feedback_id",
        "auto_feedback",
        "SET NULL",
        "CASCADE",
        "deleting feedback leaves the run without feedback; the run stays",
    ),
    Relation(
        "quest_attempts",
        "quest_id",
        "quests",
        "CASCADE",
        "CASCADE",
        "a quest renamed (its text id) keeps its attempts; a removed quest takes them",
    ),
    Relation(
        "quest_attempts",
        "feedback_id",
        "auto_feedback",
        "SET NULL",
        "CASCADE",
        "as for runs: the attempt is the user's, the feedback is derived",
    ),
    Relation(
        "feedback_notes",
        "feedback_id",
        "auto_feedback",
        "CASCADE",
        "CASCADE",
        "notes annotate one feedback and mean nothing without it",
    ),
    Relation(
        "peer_reviews",
        "run_id",
        "runs",
        "CASCADE",
        "CASCADE",
        "a review is of one run; the run's deletion was the user's explicit choice",
    ),
    Relation(
        "active_state",
        "project_id",
        "talk_projects",
        "SET NULL",
        "CASCADE",
        "deleting the open talk leaves no talk open, not a dangling pointer",
    ),
)

#: 0008: the tables whose foreign keys had no ON UPDATE rule in 0007, declared again with
#: the rules of RELATIONS. (0007 stays as shipped: an applied migration is never edited.)
FK_TABLES_0008: dict[str, str] = {
    "runs": """CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES talk_projects (id) ON DELETE CASCADE ON UPDATE CASCADE,
    audio_path TEXT,
    duration_s REAL,
    feedback_id INTEGER REFERENCES auto_feedback (id) ON DELETE SET NULL ON UPDATE CASCADE,
    created_at REAL NOT NULL
)""",
    "quest_attempts": """CREATE TABLE quest_attempts (
    id INTEGER PRIMARY KEY,
    quest_id TEXT NOT NULL REFERENCES quests (id) ON DELETE CASCADE ON UPDATE CASCADE,
    score REAL,
    feedback_id INTEGER REFERENCES auto_feedback (id) ON DELETE SET NULL ON UPDATE CASCADE,
    created_at REAL NOT NULL
)""",
    "feedback_notes": """CREATE TABLE feedback_notes (
    id INTEGER PRIMARY KEY,
    feedback_id INTEGER NOT NULL
        REFERENCES auto_feedback (id) ON DELETE CASCADE ON UPDATE CASCADE,
    body TEXT NOT NULL
)""",
    "peer_reviews": """CREATE TABLE peer_reviews (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE ON UPDATE CASCADE,
    reviewer TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL
)""",
    "active_state": """CREATE TABLE active_state (
    key TEXT PRIMARY KEY,
    project_id INTEGER REFERENCES talk_projects (id) ON DELETE SET NULL ON UPDATE CASCADE
)""",
}


def declare_on_update(tx: WriteTx) -> None:
    """0008: rebuild the tables of :data:`FK_TABLES_0008` (12-step, indexes re-created, each
    table's ``foreign_key_check`` run); rows are copied as they are."""
    for table, create_sql in FK_TABLES_0008.items():
        rebuild_table(tx, table, create_sql)


def profile_migrations() -> list[Migration]:
    """The profile migrations in order; a prefix of this list is an older app version."""
    return [
        _sql("0001_init.sql"),
        _sql("0002_outline_and_settings.sql"),
        _sql("0003_talk_training_flag.sql"),
        Migration.python("0004_talk_numbers_backfill", backfill_talk_numbers),
        Migration.rebuild("0005_runs_audio_nullable", "runs", RUNS_AUDIO_NULLABLE),
        _sql("0006_seed_quests.sql"),
        Migration.python(
            "0007_fk_constraints",
            add_foreign_keys,
            foreign_keys_off=True,
            orphans=FK_ORPHAN_POLICIES,
        ),
        Migration.python(
            "0008_fk_on_update",
            declare_on_update,
            # The checksum covers the DDL itself, not only the loop that runs it.
            source=json.dumps(FK_TABLES_0008, sort_keys=True),
            foreign_keys_off=True,
        ),
    ]


def profile_namespace(upto: str | None = None) -> Namespace:
    """The ``pupitre`` namespace, or its prefix ending at ``upto`` (an older release)."""
    migrations = profile_migrations()
    if upto is not None:
        ids = [m.id for m in migrations]
        if upto not in ids:
            raise ValueError(f"unknown pupitre migration {upto!r}; known: {', '.join(ids)}")
        migrations = migrations[: ids.index(upto) + 1]
    return Namespace(PROFILE_NAMESPACE, migrations)
