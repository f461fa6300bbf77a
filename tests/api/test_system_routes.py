"""``/health``, ``/v1/status`` and the database routes, against a real home on disk."""

from __future__ import annotations

import os

from fastapi.testclient import TestClient

from bastion.app import Home
from tests.helpers import wait_until


def test_status_reports_versions_posture_and_counters(client: TestClient, opened: Home) -> None:
    data = client.get("/v1/status").json()
    assert data["pid"] == os.getpid()
    assert data["port"] == 48123
    assert data["home"] == str(opened.config.home)
    assert data["store"]["posture"]["journal_mode"] == "WAL"
    assert data["store"]["posture"]["foreign_keys"] is True
    assert data["vault"]["backend"] == opened.config.vault.backend
    assert data["sqlite_version"].startswith("3.")
    assert data["requests"]["handled"] >= 1
    # Uptime is a clock, not a constant: a later status reports more of it.
    wait_until(
        lambda: client.get("/v1/status").json()["uptime_s"] > data["uptime_s"],
        timeout=10,
        what="uptime to grow",
    )


def test_db_status_matches_the_library(client: TestClient, opened: Home) -> None:
    data = client.get("/v1/db/status").json()
    assert data["database"] == str(opened.db.path)
    assert data["page_size"] == opened.status()["page_size"]


def test_db_checks_run_on_the_real_file(client: TestClient, opened: Home) -> None:
    opened.db.write(
        lambda tx: tx.script(
            "CREATE TABLE parent(id INTEGER PRIMARY KEY);"
            "CREATE TABLE child(id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent(id));"
        )
    )
    for kind in ("quick", "integrity", "foreign_keys"):
        r = client.get("/v1/db/check", params={"kind": kind})
        assert r.status_code == 200
        assert r.json() == {"kind": kind, "ok": True, "problems": []}

    # An orphan written with enforcement off is what foreign_key_check exists to find.
    def orphan(tx: object) -> None:
        tx.execute("PRAGMA foreign_keys=OFF")  # type: ignore[attr-defined]
        tx.execute("INSERT INTO child(id, p) VALUES (1, 99)")  # type: ignore[attr-defined]
        tx.execute("PRAGMA foreign_keys=ON")  # type: ignore[attr-defined]

    opened.db.run_outside_transaction(orphan)  # type: ignore[arg-type]
    r = client.get("/v1/db/check", params={"kind": "foreign_keys"}).json()
    assert r["ok"] is False
    assert r["problems"] == ["child rowid 1 -> parent"]


def test_a_foreign_key_check_sees_relations_declared_after_its_reader_cached_the_schema(
    client: TestClient, opened: Home
) -> None:
    """``PRAGMA foreign_key_check`` is compiled from the schema its connection cached, without
    checking that it is current: a pooled reader that ran a check before a migration declared
    the references found nothing to check and answered "ok" on a database with an orphan."""
    for _ in range(opened.config.store.readers * 2):  # every reader caches today's schema
        assert client.get("/v1/db/check", params={"kind": "foreign_keys"}).json()["ok"] is True
    opened.db.write(
        lambda tx: tx.script(
            "CREATE TABLE parent(id INTEGER PRIMARY KEY);"
            "CREATE TABLE child(id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent(id));"
        )
    )

    def orphan(tx: object) -> None:
        tx.execute("PRAGMA foreign_keys=OFF")  # type: ignore[attr-defined]
        tx.execute("INSERT INTO child(id, p) VALUES (1, 99)")  # type: ignore[attr-defined]
        tx.execute("PRAGMA foreign_keys=ON")  # type: ignore[attr-defined]

    opened.db.run_outside_transaction(orphan)  # type: ignore[arg-type]
    for _ in range(opened.config.store.readers * 2):
        r = client.get("/v1/db/check", params={"kind": "foreign_keys"}).json()
        assert r == {"kind": "foreign_keys", "ok": False, "problems": ["child rowid 1 -> parent"]}


def test_db_check_kind_is_whitelisted(client: TestClient) -> None:
    r = client.get("/v1/db/check", params={"kind": "vacuum"})
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_request"


def test_migrations_route_lists_applied_history(client: TestClient) -> None:
    r = client.get("/v1/db/migrations")
    assert r.status_code == 200
    page = r.json()
    assert page["total"] >= 1
    core = [m for m in page["items"] if m["namespace"] == "core"]
    assert core[0]["id"].startswith("0001")
    assert len(core[0]["checksum"]) == 64
    only = client.get("/v1/db/migrations", params={"namespace": "nope"}).json()
    assert (only["total"], only["items"]) == (0, [])


def test_the_daemons_scheduler_runs_backup_and_retention(opened: Home) -> None:
    from bastion.api.server import build_scheduler

    scheduler = build_scheduler(opened)
    assert sorted(scheduler.names()) == [
        "backup",
        "backup-vault",
        "db-sample",
        "integrity-check",
        "retention",
        "vault-audit-retention",
    ]
    opened.settings.set("k", 1)
    backup = scheduler.run_now("backup")
    assert (backup.runs, backup.failures) == (1, 0), backup.last_error
    assert list(opened.config.backups_dir.glob("bastion-*.db"))
    opened.vault.list()  # vault.db exists once the vault was opened
    vault_backup = scheduler.run_now("backup-vault")
    assert (vault_backup.runs, vault_backup.failures) == (1, 0), vault_backup.last_error
    assert list(opened.config.backups_dir.glob("vault-*.db"))
    retention = scheduler.run_now("retention")
    assert (retention.runs, retention.failures) == (1, 0), retention.last_error
    check = scheduler.run_now("integrity-check")
    assert (check.runs, check.failures) == (1, 0), check.last_error
    audit = scheduler.run_now("vault-audit-retention")
    assert (audit.runs, audit.failures) == (1, 0), audit.last_error
    sample = scheduler.run_now("db-sample")
    assert (sample.runs, sample.failures) == (1, 0), sample.last_error
    from bastion.store.samples import read_samples

    (taken,) = read_samples(opened.config.run_dir, opened.db.name)
    assert taken.size_bytes == opened.db.path.stat().st_size
    kinds = {e.kind for e in opened.events.query(limit=100).items}
    assert "backup.created" in kinds
    assert "store.check_failed" not in kinds


def test_the_integrity_check_sees_a_search_index_out_of_step_with_its_lines(
    client: TestClient, opened: Home
) -> None:
    """A log line written with the index's trigger bypassed: the index is consistent, so
    SQLite's integrity_check passes it, and a search for the line finds nothing. The API's
    integrity check (the dashboard's too) and the scheduled check report it, naming logs_fts;
    the quick check stays the pragma alone."""
    from bastion.store.stats import run_scheduled_check

    def unindexed(tx: object) -> None:
        sql = tx.scalar(  # type: ignore[attr-defined]
            "SELECT sql FROM sqlite_schema WHERE name = 'logs_fts_insert'"
        )
        tx.execute("DROP TRIGGER logs_fts_insert")  # type: ignore[attr-defined]
        tx.execute(  # type: ignore[attr-defined]
            "INSERT INTO logs (ts, level, source, stream, message) "
            "VALUES (1.0, 'info', 'svc', 'stdout', 'zzqqxx never indexed')"
        )
        tx.execute(sql)  # type: ignore[attr-defined]

    opened.db.write(unindexed)
    assert client.get("/v1/db/check", params={"kind": "quick"}).json()["ok"] is True
    r = client.get("/v1/db/check", params={"kind": "integrity"}).json()
    assert r["ok"] is False
    assert any('"logs_fts"' in p and "does not match" in p for p in r["problems"]), r
    scheduled = run_scheduled_check(opened.db, opened.config)
    assert scheduled["ok"] is False
    assert scheduled["repair"] == "reindex"


def test_a_search_over_a_damaged_index_is_a_typed_503_naming_the_rebuild(
    client: TestClient, opened: Home
) -> None:
    """A text search that meets FTS5's own damage (here its structure record garbled by
    another connection) answers 503 `store_index_corrupt` with `db reindex` as the hint:
    never a 500 or the store's generic SQL error. Other queries of the logs still answer."""
    from bastion.domains.logs import LogRecord

    opened.logs.insert_batch(
        LogRecord(float(i), "info", "svc", "stdout", f"line {i} hello") for i in range(50)
    )
    assert len(client.get("/v1/logs", params={"text": "hello"}).json()["items"]) == 50
    opened.db.write(
        lambda tx: tx.execute(
            "UPDATE logs_fts_data SET block = x'00000000ffffffffffffffffffffffff' WHERE id = 10"
        )
    )
    r = client.get("/v1/logs", params={"text": "hello"})
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["code"] == "store_index_corrupt"
    assert "bastion db reindex" in body["hint"]
    assert len(client.get("/v1/logs", params={"source": "svc"}).json()["items"]) == 50
