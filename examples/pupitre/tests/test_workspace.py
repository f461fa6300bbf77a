"""Multi-step workspace writes (create / switch / delete) are one transaction each: a failure
injected at any step leaves the global database exactly as it was, and files created for a
workspace that never committed are removed (seed 004, workstream 3).

Failures are injected by SQLite itself: a trigger the test installs in the real global
database raises at the chosen step, as a constraint or a full disk would."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bastion.errors import Conflict, ConstraintViolation, NotFound, StoreError
from bastion.store import Database
from examples.pupitre.app import Pupitre
from examples.pupitre.workspace import repo as workspace


def _state(db: Database) -> list[tuple[object, ...]]:
    return db.query(
        "SELECT id, name, db_file, is_active, last_opened_at FROM workspaces ORDER BY id"
    )


def _active(app: Pupitre) -> str | None:
    current = workspace.active(app.global_db)
    return None if current is None else current.id


def _inject(db: Database, name: str, when: str, event: str = "BEFORE UPDATE") -> None:
    db.write(
        lambda tx: tx.execute(
            f"CREATE TRIGGER {name} {event} ON workspaces WHEN {when} "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
    )


def test_create_switch_delete_happy_path(app: Pupitre) -> None:
    app.create_workspace("work", "Work talks")
    assert _active(app) == "work"
    assert app.profile_path("work").exists()
    app.switch_workspace("main")
    assert _active(app) == "main"
    app.delete_workspace("main")
    # The fallback (the other workspace) became active in the same transaction.
    assert [w.id for w in workspace.list_all(app.global_db)] == ["work"]
    assert _active(app) == "work"
    assert not app.profile_path("main").exists()
    assert list((app.data_dir / "trash").glob("main-*/main.db"))  # moved, never deleted


def test_at_most_one_workspace_is_active_by_schema(app: Pupitre) -> None:
    app.create_workspace("b", "B", activate=False)
    with pytest.raises(Conflict):
        app.global_db.write(
            lambda tx: tx.execute("UPDATE workspaces SET is_active = 1 WHERE id = 'b'")
        )


def test_create_rolls_back_and_removes_the_profile_file_on_insert_failure(app: Pupitre) -> None:
    before = _state(app.global_db)
    _inject(app.global_db, "fail_insert", "NEW.id = 'broken'", event="BEFORE INSERT")
    with pytest.raises(StoreError, match="injected failure"):
        app.create_workspace("broken", "Broken")
    assert _state(app.global_db) == before
    assert not app.profile_path("broken").exists()
    assert not list(app.profile_path("broken").parent.glob("broken.db*"))


def test_create_rolls_back_on_activation_failure(app: Pupitre) -> None:
    """The insert succeeded, the activation failed: the insert is undone too."""
    before = _state(app.global_db)
    _inject(app.global_db, "fail_activate", "NEW.id = 'late' AND NEW.is_active = 1")
    with pytest.raises(ConstraintViolation):
        app.create_workspace("late", "Late")
    assert _state(app.global_db) == before
    assert not app.profile_path("late").exists()


def test_create_with_a_taken_id_is_a_conflict_and_keeps_the_existing_files(app: Pupitre) -> None:
    size = app.profile_path("main").stat().st_size
    with pytest.raises(Conflict):
        app.create_workspace("main", "Again")
    assert app.profile_path("main").stat().st_size == size  # the existing profile is untouched


def test_switch_rolls_back_on_activation_failure(app: Pupitre) -> None:
    app.create_workspace("other", "Other", activate=False)
    before = _state(app.global_db)
    # The deactivation of "main" runs first and succeeds; activating "other" then fails.
    _inject(app.global_db, "fail_switch", "NEW.id = 'other' AND NEW.is_active = 1")
    with pytest.raises(ConstraintViolation):
        app.switch_workspace("other")
    assert _state(app.global_db) == before
    assert _active(app) == "main"


def test_switch_to_an_unknown_workspace_is_not_found_and_changes_nothing(app: Pupitre) -> None:
    before = _state(app.global_db)
    with pytest.raises(NotFound, match="nope"):
        app.switch_workspace("nope")
    assert _state(app.global_db) == before


def test_delete_rolls_back_on_fallback_activation_failure(app: Pupitre) -> None:
    app.create_workspace("fallback", "Fallback", activate=False)
    app.switch_workspace("main")
    before = _state(app.global_db)
    _inject(app.global_db, "fail_fallback", "NEW.id = 'fallback' AND NEW.is_active = 1")
    with pytest.raises(ConstraintViolation):
        app.delete_workspace("main")
    assert _state(app.global_db) == before
    # Files move only after a commit: the profile is still there and still opens.
    assert app.profile_path("main").exists()
    assert app.profile("main").scalar("SELECT count(*) FROM quests") == 4


def test_workspace_ids_are_validated(data_dir: Path) -> None:
    with Pupitre.open(data_dir) as app, pytest.raises(ValueError, match="lowercase"):
        app.create_workspace("../escape", "x")


def test_profiles_open_once_per_process_and_unknown_ones_are_not_found(app: Pupitre) -> None:
    app.create_workspace("shared", "Shared", activate=False)
    app.close_profile("shared")
    opened: list[Database] = []
    threads = [
        threading.Thread(target=lambda: opened.append(app.profile("shared"))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(opened) == 4
    assert len({id(db) for db in opened}) == 1
    with pytest.raises(NotFound, match="nope"):
        app.profile("nope")
