"""``config_versions``: one version per change (by content hash), across processes too; texts
that look like they hold a credential are withheld; its hot queries use their index."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.domains.confighistory import (
    ConfigHistoryRepo,
    config_history_namespace,
    content_hash,
    service_target,
    withheld_reason,
)
from bastion.domains.confighistory import queries as q
from bastion.store import Database
from bastion.store.migrations import Migrator
from bastion.store.plan import assert_indexes, assert_plan, namespace_indexes

SPEC = 'argv = ["/bin/sleep", "1000"]\nsecrets = { TOKEN = "secret:global/token" }\n'


@pytest.fixture
def history_db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(tmp_path / "bastion.db")
    Migrator(database).migrate([config_history_namespace()])
    yield database
    database.close()


def test_a_version_per_change_with_its_action_author_and_hash(history_db: Database) -> None:
    repo = ConfigHistoryRepo(history_db)
    target = service_target("speech")
    first = repo.record(target, SPEC, "api")
    assert first is not None
    assert (first.action, first.author, first.hash) == ("created", "api", content_hash(SPEC))
    assert repo.record(target, SPEC, "file") is None  # the same text: not a change
    edited = SPEC.replace("1000", "2000")
    second = repo.record(target, edited, "file")
    assert second is not None
    assert second.action == "changed"
    gone = repo.record(target, None, "file")
    assert gone is not None
    assert (gone.action, gone.hash, gone.content) == ("deleted", None, None)
    assert repo.record(target, None, "file") is None
    back = repo.record(target, SPEC, "cli", rollback_of=first.id)
    assert back is not None
    assert (back.action, back.rollback_of) == ("rollback", first.id)
    listed = repo.query(target=target).items
    assert [v.id for v in listed] == [back.id, gone.id, second.id, first.id]
    assert all(v.content is None for v in listed)  # a listing reads no text
    stored = repo.get(second.id)
    assert stored is not None
    assert stored.content == edited
    assert stored.service == "speech"


SK = "sk-proj-" + "a1B2c3D4" * 6
GH = "ghp_" + "a" * 36


@pytest.mark.parametrize(
    ("text", "why", "secret"),
    [
        (f'argv = ["server"]\n# key: {SK}\n', "sk- format", SK),
        (f'argv = ["server", "--token", "{GH}"]\n', "GitHub", GH),
        ('[vault]\nbackend = "keychain"\napi_key = "Zx9$kQ2!mW7@pL4#"\n', "api_key", "Zx9$kQ2!"),
        (
            'argv = ["x"]\nenv = { DB = "postgres://me:hunter2hunter2@db/x" }\n',
            "password",
            "hunter2",
        ),
    ],
)
def test_a_text_holding_a_credential_is_withheld(
    history_db: Database, text: str, why: str, secret: str, tmp_path: Path
) -> None:
    reason = withheld_reason(text)
    assert reason is not None
    assert why in reason
    assert secret not in reason
    repo = ConfigHistoryRepo(history_db)
    version = repo.record("services/x.toml", text, "file")
    assert version is not None
    assert version.content is None
    assert version.withheld == reason
    assert version.hash == content_hash(text)  # when it changed is still known
    stored = repo.get(version.id)
    assert stored is not None
    assert stored.content is None
    # Not in the database file nor its WAL: the secret never reached the disk.
    for path in tmp_path.glob("bastion.db*"):
        assert secret.encode() not in path.read_bytes(), path


def test_references_and_ordinary_values_are_kept() -> None:
    assert withheld_reason(SPEC) is None
    assert withheld_reason('[api]\nport = 8080\n[vault]\nbackend = "keychain"\n') is None


RECORD = """
import sys
from bastion.store import Database
from bastion.domains.confighistory import ConfigHistoryRepo
db = Database.open(sys.argv[1])
sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()
found = ConfigHistoryRepo(db).record("bastion.toml", "[api]\\nport = 1\\n", "file")
print("recorded" if found else "unchanged")
db.close()
"""


def test_two_processes_recording_the_same_edit_record_it_once(
    history_db: Database, tmp_path: Path
) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RECORD, str(tmp_path / "bastion.db")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
    for proc in procs:  # all released at once
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    answers = sorted(proc.communicate(timeout=120)[0].strip() for proc in procs)
    assert answers == ["recorded", "unchanged", "unchanged", "unchanged"]
    assert len(ConfigHistoryRepo(history_db).query(target="bastion.toml").items) == 1


def test_hot_queries_use_their_index(history_db: Database) -> None:
    repo = ConfigHistoryRepo(history_db)
    for i in range(300):
        repo.record(service_target(f"svc{i % 17}"), f"argv = ['x', '{i}']\n", "file")
    history_db.write(lambda tx: tx.execute("ANALYZE"))
    for hot in q.HOT:
        plan = assert_plan(history_db, hot.sql, hot.params, index=hot.index)
        assert not plan.scans, plan.render()
    expected = namespace_indexes(config_history_namespace())
    assert set(q.INDEXES) <= set(expected)
    assert_indexes(history_db, expected, namespace="config_history")
