"""ServiceCatalog: services/*.toml changed while a real supervisor runs real children."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from bastion.config import SupervisorConfig
from bastion.errors import ServiceNotFound, ServiceSpecError
from bastion.store import Database
from bastion.supervisor import Supervisor
from bastion.supervisor.catalog import ServiceCatalog, changed_fields, needs_restart
from bastion.supervisor.spec import parse_spec, validate_dir
from bastion.supervisor.states import ServiceState as S
from tests.helpers import gone
from tests.supervisor.conftest import KIDS, run

pytestmark = pytest.mark.posix

FAST = {"restart": {"backoff_initial_s": 0.05, "jitter": 0.0}, "stop": {"grace_s": 2.0}}


def sleeper_spec(**extra: Any) -> dict[str, Any]:
    return {"argv": [sys.executable, KIDS, "sleeper"], **FAST, **extra}


def write(folder: Path, name: str, data: dict[str, Any]) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(tomli_w.dumps(data))  # a plain write, as an editor does
    return path


def events(db: Database, kind: str) -> list[tuple[str, dict[str, Any]]]:
    rows = db.query("SELECT subject, data FROM events WHERE kind = ? ORDER BY id", (kind,))
    return [(subject, json.loads(data)) for subject, data in rows]


async def opened(db: Database, folder: Path, **kw: Any) -> tuple[Supervisor, ServiceCatalog]:
    sup = Supervisor(db, config=SupervisorConfig(log_batch_ms=10))
    await sup.open()
    catalog = ServiceCatalog(sup, folder, **kw)
    return sup, catalog


def test_changed_fields_split_process_from_in_place() -> None:
    base = parse_spec("x", sleeper_spec())
    env = parse_spec("x", sleeper_spec(env={"A": "1"}))
    probe = parse_spec("x", sleeper_spec(health={"liveness": {"kind": "process", "interval_s": 5}}))
    policy = parse_spec("x", {**sleeper_spec(), "restart": {"max_restarts": 9}})
    mcp = parse_spec("x", sleeper_spec(health={"liveness": {"kind": "mcp"}}))
    assert changed_fields(base, env) == ("env",)
    assert needs_restart(changed_fields(base, env))
    assert changed_fields(base, probe) == ("health",)
    assert not needs_restart(changed_fields(base, probe))
    assert not needs_restart(changed_fields(base, policy))
    # An MCP probe over stdio turns the child's stdout into a protocol pipe: a restart.
    assert "stdio_probe" in changed_fields(base, mcp)
    assert needs_restart(changed_fields(base, mcp))
    assert changed_fields(base, parse_spec("x", sleeper_spec(), source="/elsewhere")) == ()


def test_added_changed_removed_and_invalid_files(db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "services"
    folder.mkdir()

    async def scenario() -> None:
        # No watch: each step's reload reports what it applied (the watch has its own test).
        sup, catalog = await opened(db, folder, watch="off")
        await catalog.start()

        # A new file: registered; autostart (the default) starts it; autostart=false does not.
        write(folder, "alpha", sleeper_spec())
        write(folder, "beta", sleeper_spec(autostart=False))
        report = await catalog.reload()
        assert report.added == ("alpha", "beta")
        assert report.started == ("alpha",)
        await sup.wait_state("alpha", S.RUNNING)
        assert sup.status("beta").state == "stopped"
        pid = sup.status("alpha").pid
        assert pid

        # Probes and policy changed: the same child keeps running, its monitor is rebuilt.
        probe = {"kind": "exec", "command": ["/bin/true"], "interval_s": 0.05}
        write(folder, "alpha", sleeper_spec(health={"liveness": probe}))
        report = await catalog.reload()
        assert report.updated == ("alpha",)
        assert report.restarted == ()
        for _ in range(400):
            kinds = {p.kind for p in sup.status("alpha").probes}
            if "exec" in kinds:
                break
            await asyncio.sleep(0.02)
        assert {p.kind for p in sup.status("alpha").probes} == {"exec"}
        assert sup.status("alpha").pid == pid
        assert sup.status("alpha").state == "running"

        # env changed: a process field, so the running child is replaced.
        write(folder, "alpha", sleeper_spec(env={"MODE": "2"}, health={"liveness": probe}))
        report = await catalog.reload()
        assert report.restarted == ("alpha",)
        await sup.wait_state("alpha", S.RUNNING)
        new_pid = sup.status("alpha").pid
        assert new_pid
        assert new_pid != pid
        assert gone(pid)

        # An invalid edit: reported; the running version runs on untouched.
        write(folder, "alpha", {"argv": "not a list"})
        report = await catalog.reload()
        (problem,) = report.problems
        assert (problem.name, problem.key, problem.running_previous) == ("alpha", "argv", True)
        assert problem.code == "service_spec_invalid"
        assert sup.status("alpha").pid == new_pid
        assert catalog.problems == [problem]
        # Reported once, not at every reload.
        await catalog.reload()
        await sup.flush()
        assert [s for s, _ in events(db, "service.spec_invalid")] == ["alpha"]

        # Fixed again (process fields as before the bad edit): no problem, no restart.
        write(folder, "alpha", sleeper_spec(env={"MODE": "2"}, health={"liveness": probe}))
        report = await catalog.reload()
        assert report.problems == ()
        assert report.unchanged == ("alpha", "beta")
        assert sup.status("alpha").pid == new_pid

        # Removed: stopped by its stop policy and forgotten.
        (folder / "alpha.toml").unlink()
        report = await catalog.reload()
        assert report.removed == ("alpha",)
        assert gone(new_pid)
        with pytest.raises(ServiceNotFound):
            sup.status("alpha")
        await catalog.close()
        await sup.close()

    run(scenario)
    kinds = [k for (k,) in db.query("SELECT kind FROM events WHERE subject = 'alpha'")]
    for kind in ("service.added", "service.changed", "service.spec_invalid", "service.removed"):
        assert kind in kinds
    changed = [d for s, d in events(db, "service.changed") if s == "alpha"]
    assert [(d["fields"], d["restarted"]) for d in changed] == [
        (["health"], False),
        (["env"], True),
    ]


def test_hidden_and_non_toml_files_are_not_services(db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "services"
    write(folder, "real", sleeper_spec(autostart=False))
    (folder / ".#real.toml").write_text("editor lock")
    (folder / ".real.toml.abc.tmp").write_text("half a write")
    (folder / "notes.txt").write_text("x")

    async def scenario() -> None:
        sup, catalog = await opened(db, folder, watch="off")
        report = await catalog.start()
        assert report.added == ("real",)
        assert report.problems == ()
        await sup.close()

    run(scenario)


def test_reserved_names_are_refused() -> None:
    with pytest.raises(ServiceSpecError, match="reserved"):
        parse_spec("problems", sleeper_spec())


@pytest.mark.parametrize("name", ["con", "nul", "aux", "prn", "com1", "lpt9", "con.api", "nul.x"])
def test_windows_device_names_are_refused_everywhere(name: str, tmp_path: Path) -> None:
    """``con.toml`` cannot be a file on Windows (nor ``con.api.toml``): a home that holds one
    loses the service there, so the name is refused on every system, with a fix."""
    with pytest.raises(ServiceSpecError, match="a device name on Windows") as caught:
        parse_spec(name, sleeper_spec())
    assert caught.value.hint.startswith("Choose another name for the service")
    folder = tmp_path / "services"
    folder.mkdir()
    write(folder, name, sleeper_spec())
    good, bad = validate_dir(folder)
    assert good == []
    assert "a device name on Windows" in bad[0].message
    for fine in ("console", "com", "com10", "nullable", "aux-1", "lpt"):
        assert parse_spec(fine, sleeper_spec()).name == fine


def test_put_validates_with_the_toml_code_and_writes_only_valid_specs(
    db: Database, tmp_path: Path
) -> None:
    folder = tmp_path / "services"
    folder.mkdir()

    async def scenario() -> None:
        sup, catalog = await opened(db, folder, watch="off")
        await catalog.start()
        bad_cases: list[tuple[dict[str, Any], str]] = [
            ({"argv": []}, "argv"),
            ({"argv": [sys.executable], "cwd": None}, "null"),  # JSON null has no TOML form
            ({"argv": [sys.executable], "restart": {"max_restarts": "3"}}, "restart.max_restarts"),
            ({"argv": [sys.executable], "bogus": 1}, "bogus"),
            ({"argv": ["no-such-program-xyz"]}, "not found"),
        ]
        for data, needle in bad_cases:
            with pytest.raises(ServiceSpecError, match=needle.replace(".", r"\.")):
                await catalog.put("svc", data)
            assert not (folder / "svc.toml").exists()
            assert [p.name for p in folder.iterdir()] == []  # no temp file left either

        created, report = await catalog.put("svc", sleeper_spec(autostart=False))
        assert created
        assert report.added == ("svc",)
        path = folder / "svc.toml"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        # The file is the source of truth: it holds what was sent, argv[0] as given.
        assert tomllib.loads(path.read_text())["argv"] == [sys.executable, KIDS, "sleeper"]
        created, report = await catalog.put("svc", sleeper_spec(autostart=False, env={"A": "b"}))
        assert not created
        assert report.updated == ("svc",)  # not running: nothing to restart
        assert sup.spec("svc").env == {"A": "b"}

        report = await catalog.delete("svc")
        assert report.removed == ("svc",)
        assert not path.exists()
        with pytest.raises(ServiceNotFound):
            await catalog.delete("svc")
        await sup.close()

    run(scenario)


@pytest.mark.parametrize("mode", ["auto", "poll"])
def test_the_watch_applies_edits_without_a_request(db: Database, tmp_path: Path, mode: str) -> None:
    folder = tmp_path / "services"
    folder.mkdir()

    async def until(predicate: Any, what: str) -> None:
        for _ in range(1500):
            if predicate():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    async def scenario() -> None:
        sup, catalog = await opened(db, folder, watch=mode, poll_s=0.1)
        await catalog.start()
        await until(lambda: catalog.watching == ("native" if mode == "auto" else "poll"), "watch")
        write(folder, "late", sleeper_spec())
        await until(lambda: "late" in {s.name for s in sup.list()}, "the new file to be seen")
        await sup.wait_state("late", S.RUNNING)
        pid = sup.status("late").pid
        assert pid
        (folder / "late.toml").unlink()
        await until(lambda: "late" not in {s.name for s in sup.list()}, "the removal")
        assert gone(pid)
        # The folder itself removed and created again: the watch follows it back.
        folder.rmdir()
        await asyncio.sleep(0.3)
        folder.mkdir()
        write(folder, "again", sleeper_spec(autostart=False))
        await until(lambda: "again" in {s.name for s in sup.list()}, "the recreated folder")
        await catalog.close()
        await sup.close()

    run(scenario)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_on_linux_the_folder_is_watched_by_the_event_loop_not_a_polling_thread(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 22 §7: watchfiles' thread wakes every ``step`` (50 ms) to look for its stop
    event; on Linux the folder's inotify descriptor is read by the event loop instead, which
    sleeps until the kernel has an event. watchfiles is not used at all (it would raise
    here), and edits, removals and the folder's own removal are still followed."""
    import watchfiles

    def no_watchfiles(*args: object, **kwargs: object) -> object:
        raise AssertionError("watchfiles is not needed where inotify is")

    monkeypatch.setattr(watchfiles, "awatch", no_watchfiles)
    folder = tmp_path / "services"
    folder.mkdir()

    async def until(predicate: Any, what: str) -> None:
        for _ in range(1500):
            if predicate():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    async def scenario() -> None:
        # A poll interval of an hour: only events can make these changes seen in time.
        sup, catalog = await opened(db, folder, watch="auto", poll_s=3600)
        await catalog.start()
        await until(lambda: catalog.watching == "native", "the watch")
        write(folder, "late", sleeper_spec(autostart=False))
        await until(lambda: "late" in {s.name for s in sup.list()}, "the new file to be seen")
        (folder / "late.toml").unlink()
        await until(lambda: "late" not in {s.name for s in sup.list()}, "the removal")
        assert not events(db, "supervisor.watch_fallback")
        await catalog.close()
        await sup.close()

    run(scenario)


def test_file_mode_and_atomicity_of_put_survive_a_crowded_folder(
    db: Database, tmp_path: Path
) -> None:
    # Two declarations at once (an app's two windows): both land, each file whole.
    folder = tmp_path / "services"
    folder.mkdir()

    async def scenario() -> None:
        sup, catalog = await opened(db, folder, watch="off")
        await catalog.start()
        await asyncio.gather(
            catalog.put("one", sleeper_spec(autostart=False)),
            catalog.put("two", sleeper_spec(autostart=False)),
        )
        assert sorted(s.name for s in sup.list()) == ["one", "two"]
        for name in ("one", "two"):
            tomllib.loads((folder / f"{name}.toml").read_text())
        assert sorted(os.listdir(folder)) == ["one.toml", "two.toml"]
        await sup.close()

    run(scenario)


@pytest.mark.root
def test_a_history_the_disk_refuses_is_said_in_one_line_and_caught_up_later(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The history's database on a full disk: the reload applies the spec all the same, the
    # daemon's log says why the version was not recorded in one line (a traceback there is
    # a bug shown to a user), and the next reload with room records it.
    from bastion.domains.confighistory import ConfigHistoryRepo, config_history_namespace
    from bastion.store.migrations import Migrator
    from tests.fsfaults import mounted_tmpfs, needs_root

    needs_root()
    folder = tmp_path / "services"
    folder.mkdir()
    with mounted_tmpfs(tmp_path / "mnt", size="4m") as mount:
        history_db = Database.open(mount.path / "bastion.db")
        try:
            Migrator(history_db).migrate([config_history_namespace()])
            history = ConfigHistoryRepo(history_db)

            async def scenario() -> tuple[list[str], list[str]]:
                sup, catalog = await opened(db, folder, watch="off", history=history)
                try:
                    write(folder, "a", sleeper_spec(autostart=False))
                    mount.fill()
                    full = await catalog.reload()
                    mount.unfill()
                    later = await catalog.reload()
                    return list(full.added), list(later.unchanged)
                finally:
                    await sup.close()

            with caplog.at_level(logging.WARNING, logger="bastion.supervisor.catalog"):
                added, unchanged = run(scenario)
            assert (added, unchanged) == (["a"], ["a"])
            (warning,) = [r for r in caplog.records if "history" in r.getMessage()]
            assert warning.exc_info is None, "a traceback in the daemon's log"
            assert "disk full" in warning.getMessage()
            assert [v.action for v in history.query().items] == ["created"]
        finally:
            history_db.close()
