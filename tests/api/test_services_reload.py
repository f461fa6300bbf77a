"""services/ changed while the daemon runs: PUT/DELETE /v1/services/{name}, reload, problems,
and the CLI and the API agreeing (in-process app with its supervisor, and a real daemon)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from click.testing import CliRunner
from fastapi.testclient import TestClient

from bastion.api import create_app
from bastion.app import Home
from bastion.cli import cli

from ..helpers import wait_until
from .conftest import PORT, authorized
from .daemon_process import RunningDaemon

pytestmark = pytest.mark.posix

SLEEPER = [
    sys.executable,
    "-c",
    "import threading; print('up', flush=True); threading.Event().wait()",
]


@pytest.fixture
def supervised(opened: Home, token: str) -> Iterator[TestClient]:
    app = create_app(opened, port=PORT, token=token, dashboard=False, supervise=True)
    with authorized(app, token) as client:
        yield client


def _names(c: TestClient) -> list[str]:
    return [s["name"] for s in c.get("/v1/services").json()["items"]]


def test_status_says_what_contains_the_services_here(supervised: TestClient, opened: Home) -> None:
    """Issue 22 §5: the daemon's status names what contains each service on this machine:
    a cgroup v2 of its own (here: Linux, cgroup2 writable as root, this home's
    ``bastion-<tag>`` made at start), else the process group and the shim and why not."""
    from bastion.supervisor import _platform as plat

    services = supervised.get("/v1/status").json()["services"]
    said = services["containment"]
    if said.startswith("services contained by cgroup v2 ("):
        tag = plat.home_tag(opened.config.db_path)
        assert f"/bastion-{tag})" in said
    else:
        assert said.startswith("services contained by process group + shim; cgroup v2 not used: ")
    assert services["cgroup_problem"] == ""


def test_put_declares_validates_and_writes_the_file(supervised: TestClient, opened: Home) -> None:
    c = supervised
    folder = opened.config.services_dir
    spec: dict[str, Any] = {"argv": SLEEPER, "env": {"MODE": "1"}, "stop": {"grace_s": 2}}
    created = c.put("/v1/services/mcp-notes", json=spec)
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "mcp-notes"
    wait_until(
        lambda: c.get("/v1/services/mcp-notes").json()["state"] == "running",
        timeout=30,
        what="the declared service to run (autostart)",
    )
    pid = c.get("/v1/services/mcp-notes").json()["pid"]
    on_disk = tomllib.loads((folder / "mcp-notes.toml").read_text())
    assert on_disk == spec

    # The same code as a TOML file refuses a bad spec; nothing is written, nothing changes.
    bad = c.put("/v1/services/mcp-notes", json={**spec, "restart": {"policy": "sometimes"}})
    assert bad.status_code == 422
    body = bad.json()
    assert body["code"] == "service_spec_invalid"
    assert "restart.policy" in body["message"]
    assert "Use one of" in body["hint"]
    assert tomllib.loads((folder / "mcp-notes.toml").read_text()) == on_disk
    assert c.get("/v1/services/mcp-notes").json()["pid"] == pid
    nulls = c.put("/v1/services/other", json={"argv": SLEEPER, "cwd": None})
    assert (nulls.status_code, nulls.json()["code"]) == (422, "service_spec_invalid")
    assert "cwd: null" in nulls.json()["message"]
    assert not (folder / "other.toml").exists()
    reserved = c.put("/v1/services/problems", json={"argv": SLEEPER})
    assert reserved.status_code in (405, 422)  # never a service named like the route

    # A policy-only change: replaced in place, the child runs on.
    updated = c.put("/v1/services/mcp-notes", json={**spec, "restart": {"max_restarts": 7}})
    assert updated.status_code == 200
    assert updated.json()["pid"] == pid
    # A process change (env): restarted.
    c.put("/v1/services/mcp-notes", json={**spec, "env": {"MODE": "2"}})
    wait_until(
        lambda: c.get("/v1/services/mcp-notes").json()["pid"] not in (None, pid),
        timeout=30,
        what="a new child",
    )
    gone = c.delete("/v1/services/mcp-notes")
    assert gone.status_code == 200
    assert gone.json()["removed"] == ["mcp-notes"]
    assert not (folder / "mcp-notes.toml").exists()
    assert c.get("/v1/services/mcp-notes").status_code == 404
    assert c.delete("/v1/services/mcp-notes").status_code == 404

    feed = c.get("/v1/activity", params={"actor": "api", "order": "asc"}).json()["items"]
    assert ("service.put", "mcp-notes") in [(a["action"], a["subject"]) for a in feed]


def test_a_file_added_is_known_to_the_next_request(supervised: TestClient, opened: Home) -> None:
    # The old bug: `services list` (files) showed it, `services start` (daemon) said
    # "no service named". Every answer now syncs with the folder first.
    c = supervised
    folder = opened.config.services_dir
    (folder / "fresh.toml").write_text(tomli_w.dumps({"argv": SLEEPER, "autostart": False}))
    assert "fresh" in _names(c)
    started = c.post("/v1/services/fresh/start", json={})
    assert started.status_code == 200, started.text
    (folder / "later.toml").write_text(tomli_w.dumps({"argv": SLEEPER, "autostart": False}))
    assert c.post("/v1/services/later/start", json={}).status_code == 200
    (folder / "later.toml").unlink()
    assert c.get("/v1/services/later").status_code == 404


def test_invalid_file_is_a_problem_and_the_running_version_runs_on(
    supervised: TestClient, opened: Home
) -> None:
    c = supervised
    folder = opened.config.services_dir
    c.put("/v1/services/keeper", json={"argv": SLEEPER})
    wait_until(lambda: c.get("/v1/services/keeper").json()["state"] == "running", timeout=30)
    pid = c.get("/v1/services/keeper").json()["pid"]
    (folder / "keeper.toml").write_text('argv = ["x"\n')  # broken TOML
    (folder / "broken.toml").write_text("argv = 3\n")
    problems = c.get("/v1/services/problems").json()["items"]
    assert [(p["name"], p["running_previous"]) for p in problems] == [
        ("broken", False),
        ("keeper", True),
    ]
    assert "not valid TOML" in problems[1]["message"]
    assert problems[0]["key"] == "argv"
    assert c.get("/v1/services/keeper").json()["pid"] == pid
    events = c.get("/v1/events", params={"kind": "service.spec_invalid"}).json()["items"]
    assert {e["subject"] for e in events} == {"broken", "keeper"}

    report = c.post("/v1/services/reload", json={})
    assert report.status_code == 200
    assert [p["name"] for p in report.json()["problems"]] == ["broken", "keeper"]
    (folder / "keeper.toml").write_text(tomli_w.dumps({"argv": SLEEPER}))
    (folder / "broken.toml").unlink()
    assert c.get("/v1/services/problems").json()["items"] == []
    assert c.get("/v1/services/keeper").json()["pid"] == pid


def test_routes_without_a_supervisor_answer_503(client: TestClient) -> None:
    assert client.post("/v1/services/reload", json={}).status_code == 503
    assert client.put("/v1/services/x", json={"argv": SLEEPER}).status_code == 503
    assert client.get("/v1/services/problems").status_code == 503


def bastion(home: Path, *args: str) -> tuple[int, Any]:
    result = CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)
    return result.exit_code, result.stdout


def test_cli_and_daemon_agree_on_a_file_added_while_it_runs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    daemon = RunningDaemon(home)
    try:
        folder = home / "services"
        (folder / "added.toml").write_text(tomli_w.dumps({"argv": SLEEPER, "autostart": False}))
        # At once, no waiting for the watch: list (files) and start (daemon) agree.
        code, out = bastion(home, "services", "list", "--json")
        assert code == 0
        assert "added" in [r["name"] for r in json.loads(out)]
        code, out = bastion(home, "services", "start", "added", "--json")
        assert code == 0, out
        assert json.loads(out)["state"] in {"starting", "running"}
        api = {s["name"] for s in daemon.client.get("/v1/services")["items"]}
        code, out = bastion(home, "services", "list", "--json")
        assert api == {r["name"] for r in json.loads(out)}

        # The watch alone (no request naming services) starts a new autostart file.
        (folder / "auto.toml").write_text(tomli_w.dumps({"argv": SLEEPER}))
        wait_until(
            lambda: any(
                e["subject"] == "auto" and (e.get("data") or {}).get("to") == "running"
                for e in daemon.client.get("/v1/events", limit=200)["items"]
            ),
            timeout=30,
            what="the watch to start the new service",
        )
        (folder / "bad.toml").write_text("argv = 1\n")
        code, out = bastion(home, "services", "reload", "--json")
        assert code == 1
        assert [p["name"] for p in json.loads(out)["problems"]] == ["bad"]
        (folder / "bad.toml").unlink()
        code, out = bastion(home, "services", "reload")
        assert code == 0
    finally:
        daemon.terminate()


def test_services_reload_without_a_daemon_says_so(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert bastion(home, "init")[0] == 0
    result = CliRunner().invoke(cli, ["--home", str(home), "services", "reload"])
    assert result.exit_code == 69
    assert f"no bastion daemon is running for the home {home}" in result.stderr


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_out_of_inotify_instances_the_daemon_polls(tmp_path: Path) -> None:
    # A user namespace gets its own inotify limits: 0 instances there makes the OS watcher
    # fail for real (EMFILE), without touching the machine's limit.
    probe = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "sh",
            "-c",
            "echo 0 > /proc/sys/user/max_inotify_instances",
        ],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot set inotify limits in a user namespace: {probe.stderr!r}")
    home = tmp_path / "home"
    wrapper = [
        "unshare",
        "--user",
        "--map-root-user",
        "sh",
        "-c",
        'echo 0 > /proc/sys/user/max_inotify_instances && exec "$@"',
        "sh",
    ]
    daemon = RunningDaemon(home, wrap=wrapper)
    try:
        (home / "services" / "polled.toml").write_text(tomli_w.dumps({"argv": SLEEPER}))
        wait_until(
            lambda: any(
                e["subject"] == "polled" and (e.get("data") or {}).get("to") == "running"
                for e in daemon.client.get("/v1/events", limit=200)["items"]
            ),
            timeout=30,
            what="the polling watch to start the new service",
        )
        kinds = [e["kind"] for e in daemon.client.get("/v1/events", limit=200)["items"]]
        assert "supervisor.watch_fallback" in kinds
        assert "polling it instead" in daemon.log()
    finally:
        daemon.terminate()


@pytest.mark.parametrize(
    ("body", "key"),
    [
        # Not an environment variable's plain name: not repeated (it may hold a secret).
        (b'{"argv": %s, "env": {"A\\udce9": "x"}}', "env.<a key>"),
        (b'{"argv": %s, "env": {"A": "x\\u0000y"}}', "env.A"),
    ],
)
def test_put_refuses_text_no_spec_can_hold_naming_the_key(
    supervised: TestClient, opened: Home, body: bytes, key: str
) -> None:
    """A lone surrogate in a key was accepted, then failed the file's write: a 400 "invalid
    request" naming nothing. A NUL in an env value was written and started: the spawn failed."""
    r = supervised.put(
        "/v1/services/odd",
        content=body % json.dumps(SLEEPER).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "service_spec_invalid"
    assert f"{key}: " in r.json()["message"]
    assert not (opened.config.services_dir / "odd.toml").exists()
    assert supervised.get("/v1/services/odd").status_code == 404


@pytest.mark.root
def test_put_and_delete_on_a_services_folder_the_disk_refuses_name_the_cause(
    opened: Home, token: str
) -> None:
    # The folder on a tmpfs of its own: read-only, then full. Each refusal is the API's
    # {code, message, hint} naming the file and the cause, not a 500 "internal error", and
    # changes nothing: no file, no version in the history, the running services as they were.
    from bastion.domains.confighistory import ConfigHistoryRepo
    from tests.fsfaults import mounted_tmpfs, needs_root

    needs_root()
    services = opened.config.services_dir
    with mounted_tmpfs(services, "1m") as mount:
        app = create_app(opened, port=PORT, token=token, dashboard=False, supervise=True)
        with authorized(app, token) as c:
            spec = {"argv": SLEEPER, "autostart": False}
            assert c.put("/v1/services/kept", json=spec).status_code == 201
            history = ConfigHistoryRepo(opened.db).query(limit=100).items
            mount.remount("ro")
            refused = [
                ("write", "is on read-only storage", c.put("/v1/services/new", json=spec)),
                ("remove", "is on read-only storage", c.delete("/v1/services/kept")),
            ]
            mount.remount("rw")
            mount.fill()
            refused.append(("write", "is full", c.put("/v1/services/new", json=spec)))
            mount.unfill()
            for verb, cause, answer in refused:
                body = answer.json()
                assert answer.status_code == 503, body
                assert body["code"] == "service_file_unwritable"
                assert body["message"].startswith(f"cannot {verb} {services}/")
                assert cause in body["message"]
                assert "nothing was changed" in body["hint"]
            assert sorted(p.name for p in services.iterdir()) == ["kept.toml"]
            assert _names(c) == ["kept"]
            assert ConfigHistoryRepo(opened.db).query(limit=100).items == history
