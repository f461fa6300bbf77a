"""Feedback linking and peer-review import: multi-step profile writes that leave nothing
partial behind -- no unlinked feedback row, no half-imported graph, no orphan artifact file
(seed 004, workstream 3: "no partial writes remain on injected failure paths")."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.errors import ConstraintViolation, NotFound, ReferenceViolation, StoreError
from bastion.store import Database, WriteTx
from bastion.store.faults import Fault, FaultyVFS
from examples.pupitre.app import Pupitre
from examples.pupitre.feedback import repo as feedback
from examples.pupitre.pack import repo as pack
from examples.pupitre.quest import repo as quest
from examples.pupitre.talk import repo as talk

GRAPH = ("talk_projects", "talk_outlines", "runs", "peer_reviews")


def _counts(db: Database) -> dict[str, int]:
    return {t: int(db.scalar(f"SELECT count(*) FROM {t}")) for t in (*GRAPH, "auto_feedback")}


def _run(app: Pupitre) -> int:
    def unit(tx: WriteTx) -> int:
        project = talk.create_project(tx, "Keynote")
        return talk.add_run(tx, project, "audio/take1.wav", 42.0)

    return app.profile().write(unit)


def test_run_analyze_links_feedback(app: Pupitre) -> None:
    run_id = _run(app)
    feedback_id = app.analyze_run(run_id, "3 fillers, good pace")
    run = talk.get_run(app.profile(), run_id)
    assert run is not None
    assert run.feedback_id == feedback_id
    stored = feedback.get(app.profile(), feedback_id)
    assert stored is not None
    assert (stored.kind, stored.summary) == ("run", "3 fillers, good pace")


def test_run_analyze_of_a_missing_run_leaves_no_feedback_row(app: Pupitre) -> None:
    before = feedback.count(app.profile())
    with pytest.raises(NotFound, match="run with id 999"):
        app.analyze_run(999, "orphan feedback")
    assert feedback.count(app.profile()) == before


def test_analyze_attempt_links_or_leaves_nothing(app: Pupitre) -> None:
    db = app.profile()
    attempt_id = db.write(lambda tx: quest.add_attempt(tx, "warmup-60s", 0.7))
    feedback_id = app.analyze_attempt(attempt_id, "pauses well placed")
    attempt = quest.get_attempt(db, attempt_id)
    assert attempt is not None
    assert attempt.feedback_id == feedback_id
    before = feedback.count(db)
    with pytest.raises(NotFound):
        app.analyze_attempt(attempt_id + 100, "nothing to link")
    assert feedback.count(db) == before
    with pytest.raises(ReferenceViolation):
        db.write(lambda tx: quest.add_attempt(tx, "no-such-quest", 0.1))


def _pack(tmp_path: Path, **overrides: object) -> Path:
    folder = tmp_path / "pack"
    folder.mkdir(exist_ok=True)
    (folder / "take.wav").write_bytes(b"RIFF....WAVEfmt " + bytes(2048))
    manifest = {
        "title": "Imported talk",
        "outline": "Hook / story / ask",
        "audio": "take.wav",
        "duration_s": 95.5,
        "reviewer": "ana",
        "body": "Strong close; slow down the intro.",
        **overrides,
    }
    (folder / "review.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def _artifacts(app: Pupitre) -> list[Path]:
    return sorted(p for p in (app.data_dir / "artifacts").rglob("*") if p.is_file())


def test_import_peer_review_writes_the_graph_and_the_artifact(app: Pupitre, tmp_path: Path) -> None:
    result = app.import_peer_review(_pack(tmp_path))
    db = app.profile()
    run = talk.get_run(db, result.run_id)
    assert run is not None
    assert run.project_id == result.project_id
    assert (app.data_dir / str(run.audio_path)).read_bytes() == (
        tmp_path / "pack" / "take.wav"
    ).read_bytes()
    outline = talk.latest_outline(db, result.project_id)
    assert outline is not None
    assert outline.body == "Hook / story / ask"
    assert [r.reviewer for r in pack.reviews_for_run(db, result.run_id)] == ["ana"]
    assert _artifacts(app) == [app.data_dir / str(run.audio_path)]
    assert (_artifacts(app)[0].stat().st_mode & 0o777) == 0o600


def test_import_rolls_back_the_graph_and_removes_files_when_the_review_insert_fails(
    app: Pupitre, tmp_path: Path
) -> None:
    db = app.profile()
    before = _counts(db)
    # Injected at the last step of the graph: the peer-review insert.
    db.write(
        lambda tx: tx.execute(
            "CREATE TRIGGER fail_review BEFORE INSERT ON peer_reviews "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
    )
    with pytest.raises(ConstraintViolation):
        app.import_peer_review(_pack(tmp_path))
    assert _counts(db) == before  # project, outline and run were rolled back with it
    assert _artifacts(app) == []  # compensation removed the copied audio


def test_import_refuses_a_bad_pack_before_touching_anything(app: Pupitre, tmp_path: Path) -> None:
    before = _counts(app.profile())
    with pytest.raises(ValueError, match="'reviewer'"):
        app.import_peer_review(_pack(tmp_path, reviewer=None))
    with pytest.raises(ValueError, match="inside the pack folder"):
        app.import_peer_review(_pack(tmp_path, audio="../../etc/passwd"))
    assert _counts(app.profile()) == before
    assert _artifacts(app) == []


def test_import_of_a_missing_audio_file_leaves_nothing(app: Pupitre, tmp_path: Path) -> None:
    before = _counts(app.profile())
    with pytest.raises(FileNotFoundError):
        app.import_peer_review(_pack(tmp_path, audio="missing.wav"))
    assert _counts(app.profile()) == before
    assert _artifacts(app) == []


@pytest.fixture
def faulty(data_dir: Path) -> Iterator[tuple[Pupitre, FaultyVFS]]:
    name = f"pupitre-drill-{uuid.uuid4().hex[:8]}"
    vfs = FaultyVFS(name)
    app = Pupitre.open(data_dir, vfs=name)
    try:
        app.create_workspace("main", "Main")
        yield app, vfs
    finally:
        vfs.disarm()
        app.close()
        vfs.close()


@pytest.mark.parametrize("fault", [Fault.ENOSPC, Fault.EIO, Fault.SHORT])
def test_a_disk_failure_at_commit_leaves_no_graph_row_and_no_file(
    faulty: tuple[Pupitre, FaultyVFS], tmp_path: Path, fault: Fault
) -> None:
    """The disk refuses the commit's first WAL write: the error reaches the caller typed,
    the on_rollback compensation removes the copied audio, and reopening shows no trace."""
    app, vfs = faulty
    db = app.profile()
    before = _counts(db)
    pack_dir = _pack(tmp_path)
    vfs.arm(fault, op="write", at=1, file_suffix="-wal")
    with pytest.raises(StoreError):
        app.import_peer_review(pack_dir)
    vfs.disarm()
    assert _artifacts(app) == []
    app.close_profile("main")
    reopened = app.profile("main")
    assert _counts(reopened) == before
    assert reopened.query("PRAGMA integrity_check") == [("ok",)]
    # And the same import succeeds once the disk is healthy again.
    result = app.import_peer_review(pack_dir)
    assert talk.get_run(reopened, result.run_id) is not None
