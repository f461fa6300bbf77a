"""Secrets that change under a running service (issue 22 §3): ``on_secret_change``.

A real home (encrypted-file vault, key from the environment), a supervisor fed by it
(``Home.supervisor``: the vault as its ``SecretWatch``), real children, and the change made
by **another process**: the CLI, ``python -m bastion secrets set/delete``, on the same
vault.db. Nothing tells the supervisor but the file changing.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets as pysecrets
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from bastion.app import Home
from bastion.config import SupervisorConfig, load_config
from bastion.supervisor import ServiceState, Supervisor

from ..helpers import await_until, file_vault_env, gone
from .conftest import kid, run

pytestmark = [pytest.mark.posix, pytest.mark.slow]
S = ServiceState
REF = "secret:global/api_token"


def _value(tag: str) -> str:
    return f"{tag}-{pysecrets.token_urlsafe(18)}"


@pytest.fixture
def vault_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    # The vault reads its key variable from the environment; the CLI gets the same.
    return file_vault_env(monkeypatch)


@pytest.fixture
def home(tmp_path: Path, vault_env: dict[str, str]) -> Iterator[Home]:
    h = Home.init(load_config(tmp_path / "home", env=vault_env))
    try:
        yield h
    finally:
        h.close()


async def cli(home: Home, env: dict[str, str], *args: str, stdin: str = "") -> str:
    """``bastion --home H ARGS`` in its own process (stdin for a value), its stdout."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bastion",
        "--home",
        str(home.config.home),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    out, err = await proc.communicate(stdin.encode())
    assert proc.returncode == 0, err.decode()
    return out.decode()


def _dump(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def _user(tmp: Path, name: str = "user", **extra: Any) -> tuple[Any, Path, Path]:
    out, reload_file = tmp / f"{name}.json", tmp / f"{name}.reload"
    spec = kid(
        name,
        "secret_user",
        "API_TOKEN",
        str(out),
        str(reload_file),
        secrets={"API_TOKEN": extra.pop("ref", REF)},
        **extra,
    )
    return spec, out, reload_file


def _events(home: Home, name: str, kind: str) -> list[Any]:
    return [e for e in home.events.query(subject=name, limit=1000).items if e.kind == kind]


def _messages(home: Home, source: str | None = None) -> list[str]:
    return [r.message for r in home.logs.query(source=source, limit=10_000).items]


async def _start(home: Home, *specs: Any) -> Supervisor:
    sup = home.supervisor(list(specs))
    sup._cfg = SupervisorConfig(log_batch_ms=10)  # quick log batches for the asserts
    await sup.open()
    for spec in specs:
        await sup.start(spec.name)
    return sup


def test_a_secret_set_by_the_cli_restarts_the_service_once_with_the_new_value(
    home: Home, vault_env: dict[str, str], tmp_path: Path
) -> None:
    old, new = _value("old"), _value("new")
    home.vault.set("api_token", old)
    home.vault.set("other_token", _value("other"))
    spec, out, cache = _user(tmp_path)
    cache.write_text(old)  # the new child will print the old value it "cached"
    # A second service on another secret, left alone on change: its event is the proof that
    # the supervisor has handled a later change, so "exactly once" is checked after it.
    witness, _w_out, _ = _user(
        tmp_path, "witness", ref="secret:global/other_token", on_secret_change="none"
    )

    async def scenario() -> dict[str, Any]:
        sup = await _start(home, spec, witness)
        try:
            first = await await_until(lambda: _dump(out), timeout=30, what="the child's dump")
            assert first["env"]["API_TOKEN"] == old
            await cli(home, vault_env, "secrets", "set", "api_token", "--from-stdin", stdin=new)
            # Detection is a wake-up on the file (inotify; at most 0.5 s when polled).
            second = await await_until(
                lambda: (d := _dump(out)) and d["env"]["API_TOKEN"] == new and d,
                timeout=1.0,
                what="the new value in the restarted child's environment",
            )
            await sup.wait_state("user", S.RUNNING)
            await cli(
                home, vault_env, "secrets", "set", "other_token", "--from-stdin", stdin="x" * 24
            )
            await await_until(
                lambda: _events(home, "witness", "service.secret_changed"),
                timeout=30,
                what="the later change handled",
            )
            assert _dump(out) == second  # not restarted again
            await sup.flush()
            return {"first": first, "second": second}
        finally:
            await sup.close()

    dumps = run(scenario)
    assert dumps["second"]["pid"] != dumps["first"]["pid"]
    changed = _events(home, "user", "service.secret_changed")
    assert [e.data for e in changed] == [{"secrets": ["global/api_token"], "action": "restart"}]
    reasons = [
        (e.data["to"], e.data["reason"])
        for e in _events(home, "user", "service.transition")
        if "api_token" in e.data["reason"]
    ]
    assert reasons == [
        ("stopping", "secret global/api_token changed: restarting with the new value"),
        (
            "stopped",
            "secret global/api_token changed: restarting with the new value (stopped by SIGTERM)",
        ),
        ("starting", "secret global/api_token changed: started with the new value"),
    ]
    messages = _messages(home, "user")
    assert not [m for m in _messages(home) if old in m or new in m]
    # Both runs printed their value, the second also the old one: all redacted, none stored.
    assert messages.count("using API_TOKEN=[REDACTED:API_TOKEN]") == 2
    assert "cached API_TOKEN=[REDACTED:API_TOKEN]" in messages
    assert not [m for m in messages if old in m or new in m]


def test_a_deleted_secret_stops_the_service_naming_it(
    home: Home, vault_env: dict[str, str], tmp_path: Path
) -> None:
    home.vault.set("api_token", _value("old"))
    spec, out, _ = _user(tmp_path)

    async def scenario() -> None:
        sup = await _start(home, spec)
        try:
            await await_until(lambda: _dump(out), timeout=30, what="the child's dump")
            await cli(home, vault_env, "secrets", "delete", "api_token")
            status = await sup.wait_state("user", S.STOPPED, timeout=30)
            assert "secret global/api_token was deleted" in status.reason
            assert "set the secret again, then start the service" in status.reason
            await sup.flush()
        finally:
            await sup.close()

    run(scenario)
    transitions = [e.data["to"] for e in _events(home, "user", "service.transition")]
    assert transitions[-2:] == ["stopping", "stopped"]  # never started without the variable
    assert [e.data for e in _events(home, "user", "service.secret_deleted")] == [
        {"secrets": ["global/api_token"]}
    ]


def test_signal_mode_tells_the_program_and_redacts_the_value_it_fetches(
    home: Home, vault_env: dict[str, str], tmp_path: Path
) -> None:
    old, new = _value("old"), _value("new")
    home.vault.set("api_token", old)
    spec, out, reload_file = _user(tmp_path, on_secret_change="signal:HUP")

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        sup = await _start(home, spec)
        try:
            first = await await_until(lambda: _dump(out), timeout=30, what="the child's dump")
            reload_file.write_text(new)  # where the program re-reads its secret from on HUP
            await cli(home, vault_env, "secrets", "set", "api_token", "--from-stdin", stdin=new)
            after = await await_until(
                lambda: (d := _dump(out)) and d["hups"] and d,
                timeout=1.0,
                what="the program told of the change",
            )
            await await_until(
                lambda: "reloaded API_TOKEN=[REDACTED:API_TOKEN]" in _messages(home),
                timeout=30,
                what="the reloaded line stored",
            )
            assert sup.status("user").state == "running"
            await sup.flush()
            return first, after
        finally:
            await sup.close()

    first, after = run(scenario)
    assert after["pid"] == first["pid"]  # the same process, told by signal
    assert after["hups"] == 1
    assert after["env"]["API_TOKEN"] == old  # its environment cannot change
    assert [e.data for e in _events(home, "user", "service.secret_changed")] == [
        {"secrets": ["global/api_token"], "action": "signal:SIGHUP"}
    ]
    assert not [m for m in _messages(home) if old in m or new in m]


def test_none_mode_reports_the_change_once_and_leaves_the_service_alone(
    home: Home, vault_env: dict[str, str], tmp_path: Path
) -> None:
    home.vault.set("api_token", _value("old"))
    home.vault.set("other_token", _value("other"))
    spec, out, _ = _user(tmp_path, on_secret_change="none")
    witness, _o, _r = _user(
        tmp_path, "witness", ref="secret:global/other_token", on_secret_change="none"
    )

    async def scenario() -> tuple[dict[str, Any], dict[str, Any] | None]:
        sup = await _start(home, spec, witness)
        try:
            first = await await_until(lambda: _dump(out), timeout=30, what="the child's dump")
            await cli(
                home, vault_env, "secrets", "set", "api_token", "--from-stdin", stdin=_value("n")
            )
            await await_until(
                lambda: _events(home, "user", "service.secret_changed"), timeout=30, what="event"
            )
            # A later change elsewhere is handled; this one is not reported a second time.
            await cli(
                home, vault_env, "secrets", "set", "other_token", "--from-stdin", stdin=_value("o")
            )
            await await_until(
                lambda: _events(home, "witness", "service.secret_changed"), timeout=30, what="later"
            )
            await sup.flush()
            return first, _dump(out)
        finally:
            await sup.close()

    first, last = run(scenario)
    assert last == first
    assert len(_events(home, "user", "service.secret_changed")) == 1


def test_the_same_value_set_again_changes_nothing(
    home: Home, vault_env: dict[str, str], tmp_path: Path
) -> None:
    value = _value("same")
    home.vault.set("api_token", value)
    home.vault.set("other_token", _value("other"))
    spec, out, _ = _user(tmp_path)
    witness, _o, _r = _user(
        tmp_path, "witness", ref="secret:global/other_token", on_secret_change="none"
    )

    async def scenario() -> tuple[dict[str, Any], dict[str, Any] | None]:
        sup = await _start(home, spec, witness)
        try:
            first = await await_until(lambda: _dump(out), timeout=30, what="the child's dump")
            await cli(home, vault_env, "secrets", "set", "api_token", "--from-stdin", stdin=value)
            await cli(
                home, vault_env, "secrets", "set", "other_token", "--from-stdin", stdin=_value("o")
            )
            await await_until(
                lambda: _events(home, "witness", "service.secret_changed"), timeout=30, what="later"
            )
            return first, _dump(out)
        finally:
            await sup.close()

    first, last = run(scenario)
    assert last == first  # a new version with the same value: no restart
    assert not _events(home, "user", "service.secret_changed")


def test_signal_mode_stops_the_service_when_the_new_value_cannot_be_read(
    home: Home, tmp_path: Path
) -> None:
    # The vault says the secret changed (a new fingerprint in its index) but cannot give the
    # new value (its ciphertext damaged: what a locked keychain or a failing disk looks like
    # from here). The program must not be told to fetch a value its redactor does not hold.
    home.vault.set("api_token", _value("old"))
    spec, out, _reload = _user(tmp_path, on_secret_change="signal:HUP")

    async def scenario() -> tuple[dict[str, Any], str]:
        sup = await _start(home, spec)
        try:
            first = await await_until(lambda: _dump(out), timeout=30, what="the child's dump")
            vault_db = apsw.Connection(str(home.config.vault_db_path))
            try:
                vault_db.setbusytimeout(10_000)
                vault_db.execute(
                    "UPDATE vault_values SET ciphertext = zeroblob(length(ciphertext));"
                    "UPDATE vault_secrets SET fingerprint = 'changed-' || fingerprint"
                )
            finally:
                vault_db.close()
            status = await sup.wait_state("user", S.STOPPED, timeout=30)
            await sup.flush()
            return first, status.reason
        finally:
            await sup.close()

    first, reason = run(scenario)
    assert "secret global/api_token changed but its new value cannot be read" in reason
    assert "start the service again" in reason
    assert (_dump(out) or {})["hups"] == 0  # never told to fetch what could not be hidden
    assert gone(first["pid"])
    assert [e.data["to"] for e in _events(home, "user", "service.transition")][-2:] == [
        "stopping",
        "stopped",
    ]


class _OneWakeUp:
    """The file watch (an OS boundary, as a small fake): one wake-up per change it is told
    of, as polling gives (inotify's several events for one commit can wake a later check
    by chance, which hides what happens with exactly one)."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()

    async def changed(self) -> None:
        if self._event is None:
            self._loop, self._event = asyncio.get_running_loop(), asyncio.Event()
            self._ready.set()
        await self._event.wait()
        self._event.clear()

    def tell(self) -> None:
        assert self._ready.wait(30), "nobody watches"
        assert self._loop is not None
        assert self._event is not None
        self._loop.call_soon_threadsafe(self._event.set)

    def close(self) -> None:
        pass


class _ChangedRightAfterRead:
    """The home's vault as the supervisor's SecretWatch, except that the first read of
    ``api_token`` is followed by another writer setting it anew -- and waits until the
    supervisor has compared stamps after that change: the change lands, and is looked at,
    while the service is still starting (resolved, not yet spawned)."""

    def __init__(self, home: Home, new: str) -> None:
        from bastion.app import VaultSecrets

        self._vault = VaultSecrets(home)
        self._home, self._new = home, new
        self._watch = _OneWakeUp()
        self._changed = threading.Event()
        self._compared = threading.Event()

    def resolve(self, scope: str, name: str) -> str:
        return self._vault.resolve(scope, name)

    def resolve_stamped(self, scope: str, name: str) -> tuple[str, str]:
        found = self._vault.resolve_stamped(scope, name)
        if name == "api_token" and not self._changed.is_set():
            self._home.vault.set("api_token", self._new)
            self._changed.set()
            self._watch.tell()
            assert self._compared.wait(30), "the supervisor never compared the stamps"
        return found

    def stamps(self, keys: Any) -> dict[Any, str | None]:
        if self._changed.is_set():
            self._compared.set()
        return self._vault.stamps(keys)

    def watch(self) -> _OneWakeUp:
        return self._watch


def test_a_change_while_the_service_starts_restarts_it_with_the_new_value(
    home: Home, tmp_path: Path
) -> None:
    # The wake-up for a change that lands between the start's read of the secret and the
    # child running found nothing given to compare, and no later wake-up came: the service
    # ran on the replaced value (or on a deleted one) until the next change of vault.db.
    old, new = _value("old"), _value("new")
    home.vault.set("api_token", old)
    home.vault.set("other_token", _value("other"))
    spec, out, _ = _user(tmp_path)
    witness, witness_out, _ = _user(  # a service running already: there are stamps to read
        tmp_path, "witness", ref="secret:global/other_token", on_secret_change="none"
    )
    source = _ChangedRightAfterRead(home, new)

    async def scenario() -> dict[str, Any]:
        sup = Supervisor(home.db, [spec, witness], secrets=source)
        sup._cfg = SupervisorConfig(log_batch_ms=10)
        await sup.open()
        try:
            await sup.start("witness")
            await await_until(lambda: _dump(witness_out), timeout=30, what="the witness")
            await sup.start("user")
            dump: dict[str, Any] = await await_until(
                lambda: (d := _dump(out)) and d["env"]["API_TOKEN"] == new and d,
                timeout=30,
                what="the service restarted with the new value",
            )
            await sup.flush()
            return dump
        finally:
            await sup.close()

    run(scenario)
    assert [e.data for e in _events(home, "user", "service.secret_changed")] == [
        {"secrets": ["global/api_token"], "action": "restart"}
    ]
    assert not [m for m in _messages(home) if old in m or new in m]
