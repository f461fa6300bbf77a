"""The speech server under the seed's supervision policy, with real child processes.

The policy's numbers are checked twice: as pure functions on a fake clock (every number of the
seed, including the 30 s open time and the 5 min window, without waiting), and end to end on a
real crash-looping server. The end-to-end crash loop uses the seed's exact spec up to the
breaker opening (1 s + 2 s of backoff, then the third failure); the half-open trial and the health restarts use
the same spec with shorter times, so the suite does not wait 30 s for the breaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.helpers import await_until

from bastion.app import Home
from bastion.config import Config, load_config
from bastion.errors import KeychainUnavailable, VaultError
from bastion.supervisor import ServiceSpec, ServiceState, Supervisor
from bastion.supervisor.policy import (
    Action,
    PolicyState,
    backoff_delay,
    on_failure,
    on_healthy,
    on_open_elapsed,
    on_stable,
)
from bastion.supervisor.states import BreakerState
from examples.voice_tray.app import VoiceTray
from examples.voice_tray.service import AUTOTYPE, NAME, autotype_client_spec, speech_server_spec
from examples.voice_tray.status import StatusServer
from examples.voice_tray.tests.conftest import SENTINEL_KEY

S = ServiceState
pytestmark = pytest.mark.posix


# --- the policy, pure, fake clock ------------------------------------------------------------


def test_seed_backoff_sequence_1_2_4_up_to_60() -> None:
    spec = speech_server_spec(8765).restart
    delays = [backoff_delay(spec, attempt, random.Random(1)) for attempt in range(9)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_seed_policy_on_a_fake_clock() -> None:
    spec = speech_server_spec(8765)
    state, now = PolicyState(), 1_000_000.0
    decisions, failed_at = [], []
    for _ in range(3):  # the server crashes half a second after each start
        failed_at.append(now)
        state, decision = on_failure(
            state, spec.restart, spec.breaker, now=now, exit_ok=False, rng=random.Random(1)
        )
        decisions.append((decision.action, decision.delay))
        now += decision.delay + 0.5
    assert decisions == [
        (Action.RESTART, 1.0),
        (Action.RESTART, 2.0),
        (Action.OPEN, 30.0),  # the 3rd failure opens the breaker for 30 s
    ]
    assert state.open_until() == failed_at[-1] + 30.0
    state = on_open_elapsed(state)  # OPEN -> HALF_OPEN after the 30 s
    assert state.breaker is BreakerState.HALF_OPEN
    state, closed = on_healthy(state, spec.breaker)
    assert not closed  # one success is not enough
    state, closed = on_healthy(state, spec.breaker)
    assert closed  # 2 successes close it
    assert state.breaker is BreakerState.CLOSED
    assert state.attempt == 0  # and the backoff starts again from 1 s


def test_seed_breaker_reopens_for_30_s_every_time() -> None:
    spec = speech_server_spec(8765)
    state, now = PolicyState(), 1_000_000.0
    opened = []
    for _ in range(3):
        state, decision = on_failure(state, spec.restart, spec.breaker, now=now, exit_ok=False)
        now += decision.delay
    for _ in range(4):  # every half-open trial fails
        assert state.breaker is BreakerState.OPEN
        opened.append(state.open_timeout)
        state = on_open_elapsed(state)
        state, decision = on_failure(state, spec.restart, spec.breaker, now=now, exit_ok=False)
        now += decision.delay
    assert opened == [30.0, 30.0, 30.0, 30.0]


def test_seed_window_is_five_minutes() -> None:
    spec = speech_server_spec(8765)
    state, now = PolicyState(), 1_000_000.0
    for _ in range(10):  # a crash every 6 minutes, after a healthy run, never opens it
        state, decision = on_failure(state, spec.restart, spec.breaker, now=now, exit_ok=False)
        assert decision.action is Action.RESTART
        state = on_stable(state)  # healthy for restart.reset_after_s (60 s)
        now += 360.0
    assert spec.restart.window_s == 300
    assert spec.restart.max_restarts == 3
    # Without the healthy runs between them, the 3rd failure in a row opens it, 5 min or not.
    for _ in range(2):
        state, decision = on_failure(state, spec.restart, spec.breaker, now=now, exit_ok=False)
        now += 360.0
    state, decision = on_failure(state, spec.restart, spec.breaker, now=now, exit_ok=False)
    assert decision.action is Action.OPEN


def test_seed_restart_budget_3_in_5_min_opens_the_breaker_too() -> None:
    spec = speech_server_spec(8765)
    state, now = PolicyState(), 1_000_000.0
    actions = []
    for _ in range(4):  # healthy for a minute between crashes: not 3 in a row, 4 in 5 min
        state, decision = on_failure(state, spec.restart, spec.breaker, now=now, exit_ok=False)
        actions.append(decision.action)
        state = on_stable(state)
        now += 61.0
    assert actions == [Action.RESTART, Action.RESTART, Action.RESTART, Action.OPEN]


# --- end to end, real processes --------------------------------------------------------------


@contextlib.asynccontextmanager
async def tray_with(cfg: Config, config: Path, spec: ServiceSpec) -> AsyncIterator[VoiceTray]:
    tray = await VoiceTray.open(cfg, config_path=config, speech=spec)
    try:
        yield tray
    finally:
        await tray.close()


def _fast(spec: ServiceSpec, *, open_s: float = 1.0, interval_s: float = 0.2) -> ServiceSpec:
    """The seed's spec with its durations shrunk (same counts, thresholds and shape). The
    liveness probe gets a generous timeout: on a loaded machine a slow answer is not a 500."""
    assert spec.health.liveness is not None
    liveness = dataclasses.replace(spec.health.liveness, interval_s=interval_s, timeout_s=10.0)
    return dataclasses.replace(
        spec,
        restart=dataclasses.replace(spec.restart, backoff_initial_s=0.05, backoff_max_s=1.0),
        breaker=dataclasses.replace(spec.breaker, open_timeout_s=open_s),
        health=dataclasses.replace(spec.health, liveness=liveness),
    )


def test_crash_loop_follows_the_seed_policy_exactly(
    cfg: Config, v1_config: Path, port: int, fault: Path
) -> None:
    fault.write_text("crash", encoding="utf-8")
    spec = speech_server_spec(port, fault_file=fault)  # the seed's numbers, unchanged

    async def scenario() -> None:
        async with tray_with(cfg, v1_config, spec) as tray:
            await tray.supervisor.start(NAME)
            status = await tray.supervisor.wait_state(NAME, S.OPEN, timeout=60)
            steps = await _transitions(tray.supervisor)
        assert status.breaker == "open"
        assert status.restarts_in_window == 2
        assert status.trips == 1
        assert status.last_exit_code == 3
        backoffs = [data["delay_s"] for _, to, data in steps if to == "backoff"]
        assert backoffs == [1.0, 2.0]
        (opened,) = [data for _, to, data in steps if to == "open"]
        assert opened["open_s"] == 30.0
        assert status.next_start_at is not None
        assert status.next_start_at - status.since == pytest.approx(30.0, abs=0.5)
        assert len([to for _, to, _ in steps if to == "exited"]) == 3  # 3 failures open it
        assert "3 consecutive failures" in str(opened["reason"])

        # The breaker survives the app's restart: a new supervisor resumes it OPEN, no start.
        async with tray_with(cfg, v1_config, spec) as again:
            resumed = again.supervisor.status(NAME)
        assert (resumed.state, resumed.breaker, resumed.trips) == ("open", "open", 1)

    asyncio.run(scenario())


def test_half_open_trial_reopens_then_two_healthy_checks_close(
    cfg: Config, v1_config: Path, port: int, fault: Path
) -> None:
    fault.write_text("crash", encoding="utf-8")
    spec = _fast(speech_server_spec(port, fault_file=fault))

    async def scenario() -> None:
        async with tray_with(cfg, v1_config, spec) as tray:
            sup = tray.supervisor
            events = sup.subscribe()
            await sup.start(NAME)
            first = await _until(events, "open")  # the third failure in a row
            await _until(events, "half_open")  # the open timeout elapsed: one trial start
            # Still broken: the trial fails and the breaker re-opens, for as long again.
            second = await _until(events, "open")
            fault.write_text("ok", encoding="utf-8")  # the model loads again
            await _until(events, "half_open")
            closed = await _until(events, "running", reason="breaker closed")
            status = sup.status(NAME)
            assert await asyncio.to_thread(_get, port, "/health") == {"status": "ok"}
        assert (first["open_s"], second["open_s"]) == (1.0, 1.0)
        assert closed["reason"] == "breaker closed after 2 healthy checks"
        assert (status.state, status.breaker, status.trips) == ("running", "closed", 2)

    asyncio.run(scenario())


def test_http_health_failure_restarts_the_server(
    cfg: Config, v1_config: Path, port: int, fault: Path
) -> None:
    spec = _fast(speech_server_spec(port, fault_file=fault))

    async def scenario() -> None:
        async with tray_with(cfg, v1_config, spec) as tray:
            sup = tray.supervisor
            events = sup.subscribe()
            await sup.start(NAME)
            await _until(events, "running")
            first_pid = sup.status(NAME).pid
            fault.write_text("unhealthy", encoding="utf-8")  # alive, but /health answers 500
            unhealthy = await _until(events, "unhealthy")
            fault.write_text("ok", encoding="utf-8")
            await _until(events, "running")
            second_pid = sup.status(NAME).pid
        assert "500" in str(unhealthy["reason"])
        assert unhealthy["pid"] == first_pid
        assert second_pid is not None
        assert second_pid != first_pid

    asyncio.run(scenario())


def test_stop_sends_sigterm_then_sigkill_after_5_seconds(
    cfg: Config, v1_config: Path, port: int, fault: Path
) -> None:
    spec = speech_server_spec(port, fault_file=fault)
    assert (spec.stop.signal, spec.stop.grace_s) == ("SIGTERM", 5.0)

    async def scenario() -> None:
        async with tray_with(cfg, v1_config, spec) as tray:
            sup = tray.supervisor
            await sup.start(NAME)
            await sup.wait_state(NAME, S.RUNNING, timeout=30)
            graceful = await sup.stop(NAME)
            assert graceful.reason == "stopped (SIGTERM)"  # a well-behaved server exits
            fault.write_text("ignore-term", encoding="utf-8")  # now one that ignores SIGTERM
            await sup.start(NAME)
            await sup.wait_state(NAME, S.RUNNING, timeout=30)
            killed = await sup.stop(NAME)
        assert killed.reason == "stopped (SIGKILL after grace)"
        assert killed.last_exit_code == -9

    asyncio.run(scenario())


def test_server_output_is_captured_to_the_database_redacted(
    cfg: Config, v1_config: Path, port: int, fault: Path
) -> None:
    spec = speech_server_spec(port, fault_file=fault)

    async def scenario() -> list[str]:
        async with tray_with(cfg, v1_config, spec) as tray:
            # config.json's plaintext key went to the vault at start-up; the server gets it
            assert tray.secrets.get_configuration_status().elevenlabs_configured
            await tray.supervisor.start(NAME)
            running = await tray.supervisor.wait_state(NAME, S.RUNNING, timeout=30)
            assert running.secret_names == ("ELEVENLABS_API_KEY",)
            answer = await asyncio.to_thread(_post, port, "/transcribe", {"audio": "lights on"})
            assert answer == {"text": "Lights on", "confidence": 0.93}
            await tray.supervisor.stop(NAME)
            await tray.supervisor.flush()
            return [r.message for r in tray.db.get_component_logs(NAME, limit=1000)]

    messages = asyncio.run(scenario())
    assert "tts: using Authorization: Bearer [REDACTED:ELEVENLABS_API_KEY]" in messages
    assert "transcribed 9 bytes" in messages
    assert "speech server stopped" in messages
    assert all(SENTINEL_KEY not in m for m in messages)
    # nowhere under the home: database, WAL, backups, vault (ciphertext only)
    for path in cfg.home.rglob("*"):
        if path.is_file():
            assert SENTINEL_KEY.encode() not in path.read_bytes(), path


async def _transitions(sup: Supervisor) -> list[tuple[str, str, dict[str, Any]]]:
    events = await sup.events(NAME, limit=1000)
    # Transitions only (other events of the service, e.g. service.probe, carry no from/to).
    return [
        (str(e.data["from"]), str(e.data["to"]), e.data)
        for e in events
        if e.data and "from" in e.data
    ]


async def _until(
    events: asyncio.Queue[dict[str, Any]], to: str, *, reason: str = "", timeout: float = 60.0
) -> dict[str, Any]:
    """The next transition into ``to`` (whose reason contains ``reason``). Every transition
    is queued as it happens, so none is missed however late this coroutine runs."""
    async with asyncio.timeout(timeout):
        while True:
            event = await events.get()
            if event["to"] == to and reason in str(event["reason"]):
                return event


def _get(port: int, path: str) -> Any:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5).json()


def _post(port: int, path: str, body: dict[str, Any]) -> Any:
    return httpx.post(f"http://127.0.0.1:{port}{path}", json=body, timeout=5).json()


@pytest.mark.keychain
def test_key_from_the_keychain_at_spawn(tmp_path: Path, v1_config: Path, port: int) -> None:
    """The seed's default backend: config.json's key moves into the OS keychain (a real
    gnome-keyring Secret Service here) and the server gets it from there at spawn."""
    env = {"BASTION_VAULT_SERVICE": f"voice-tray-spawn-{tmp_path.name}"}
    cfg = load_config(tmp_path / "home", env=env)
    Home.init(cfg).close()
    spec = speech_server_spec(port)

    async def scenario() -> list[str]:
        try:
            tray = await VoiceTray.open(cfg, config_path=v1_config, speech=spec)
        except (KeychainUnavailable, VaultError) as err:
            pytest.skip(f"no usable Secret Service: {err.message}")
        try:
            assert tray.secrets.vault.backend_info()["backend"] == "keychain"
            assert tray.secrets.get_configuration_status().elevenlabs_configured
            await tray.supervisor.start(NAME)
            running = await tray.supervisor.wait_state(NAME, S.RUNNING, timeout=30)
            assert running.secret_names == ("ELEVENLABS_API_KEY",)
            await tray.supervisor.stop(NAME)
            await tray.supervisor.flush()
            return [r.message for r in tray.db.get_component_logs(NAME, limit=1000)]
        finally:
            tray.secrets.clear_all()
            await tray.close()

    messages = asyncio.run(scenario())
    # The server printed the key it was given: it is the keychain's (redacted when stored).
    assert "tts: using Authorization: Bearer [REDACTED:ELEVENLABS_API_KEY]" in messages
    assert all(SENTINEL_KEY not in m for m in messages)
    assert SENTINEL_KEY not in v1_config.read_text(encoding="utf-8")


def test_autotype_client_is_a_second_supervised_service(
    cfg: Config, v1_config: Path, port: int, fault: Path, tmp_path: Path
) -> None:
    """The seed's process manager runs the server *and* the auto-type client: both are
    bastion services; the client types what the server transcribes, and a killed client is
    restarted by the seed's policy while the server keeps running."""
    typed = tmp_path / "typed.txt"
    speech = speech_server_spec(port, fault_file=fault)
    client = autotype_client_spec(port, typed)
    assert (client.restart, client.breaker, client.stop) == (
        speech.restart,
        speech.breaker,
        speech.stop,
    )
    assert dict(client.secrets) == {}  # the client gets no key

    def lines() -> list[str]:
        return typed.read_text(encoding="utf-8").splitlines() if typed.exists() else []

    async def scenario() -> None:
        async with tray_with_both(cfg, v1_config, speech, client) as tray:
            sup = tray.supervisor
            await sup.start(NAME)
            await sup.wait_state(NAME, S.RUNNING, timeout=30)
            await sup.start(AUTOTYPE)
            first = await sup.wait_state(AUTOTYPE, S.RUNNING, timeout=30)
            await tray.supervisor.flush()
            await await_until(
                lambda: _logged(tray, "following the speech server"), timeout=30, what="feed"
            )
            await asyncio.to_thread(_post, port, "/transcribe", {"audio": "turn on the lights"})
            await await_until(lambda: lines() == ["Turn on the lights"], timeout=30, what="typing")
            assert first.pid is not None
            events = sup.subscribe()
            os.kill(first.pid, signal.SIGKILL)  # the client dies; the server does not
            exited = await _until(events, "exited")
            assert exited["pid"] == first.pid
            await _until(events, "running")
            again = sup.status(AUTOTYPE)
            assert again.pid != first.pid
            assert sup.status(NAME).state == "running"
            await await_until(
                lambda: _logged(tray, "following the speech server", count=2),
                timeout=30,
                what="the restarted client's feed",
            )
            await asyncio.to_thread(_post, port, "/transcribe", {"audio": "good night"})
            await await_until(
                lambda: lines() == ["Turn on the lights", "Good night"], timeout=30, what="typing"
            )
            stopped = await sup.stop(AUTOTYPE)
            assert stopped.reason == "stopped (SIGTERM)"

    asyncio.run(scenario())
    assert lines() == ["Turn on the lights", "Good night"]  # each typed once


@contextlib.asynccontextmanager
async def tray_with_both(
    cfg: Config, config: Path, speech: ServiceSpec, autotype: ServiceSpec
) -> AsyncIterator[VoiceTray]:
    tray = await VoiceTray.open(cfg, config_path=config, speech=speech, autotype=autotype)
    try:
        yield tray
    finally:
        await tray.close()


def _logged(tray: VoiceTray, text: str, *, count: int = 1) -> bool:
    messages = [r.message for r in tray.db.get_component_logs(AUTOTYPE, limit=1000)]
    return sum(text in m for m in messages) >= count


def test_the_websocket_stream_is_health_layer_3(
    cfg: Config, v1_config: Path, port: int, fault: Path
) -> None:
    """The seed's "Layer 3: WebSocket accepts connections": a readiness probe opens the
    server's ws://.../asr, sends ``ping``, expects ``{"status": "ok"}`` and closes. A server
    whose stream is refused while /health still answers is not ready, and is not restarted
    for it (that is the HTTP check's call); when the stream comes back it is ready again."""
    spec = _fast(speech_server_spec(port, fault_file=fault))
    assert spec.health.readiness is not None
    assert spec.health.readiness.kind == "websocket"
    readiness = dataclasses.replace(spec.health.readiness, interval_s=0.2, timeout_s=10.0)
    spec = dataclasses.replace(spec, health=dataclasses.replace(spec.health, readiness=readiness))

    def ready_is(sup: Supervisor, wanted: bool) -> Any:
        status = sup.status(NAME)
        checks = [p for p in status.probes if p.role == "readiness"]
        return status if status.ready is wanted and checks else None

    async def scenario() -> None:
        async with tray_with(cfg, v1_config, spec) as tray:
            sup = tray.supervisor
            events = sup.subscribe()
            await sup.start(NAME)
            await _until(events, "running")
            pid = sup.status(NAME).pid
            ready = await await_until(lambda: ready_is(sup, True), timeout=60, what="ready")
            (check,) = [p for p in ready.probes if p.role == "readiness"]
            assert (check.kind, check.ok) == ("websocket", True)
            assert check.detail == "websocket open, answered, closed"
            fault.write_text("no-stream", encoding="utf-8")
            not_ready = await await_until(lambda: ready_is(sup, False), timeout=60, what="unready")
            (check,) = [p for p in not_ready.probes if p.role == "readiness"]
            assert not check.ok
            assert "503" in check.detail
            assert not_ready.state == "running"
            assert not_ready.pid == pid  # not restarted for it
            fault.write_text("ok", encoding="utf-8")
            await await_until(lambda: ready_is(sup, True), timeout=60, what="ready again")
            assert sup.status(NAME).pid == pid

    asyncio.run(scenario())


def test_metrics_and_health_endpoints_of_the_tray(
    cfg: Config, v1_config: Path, port: int, fault: Path
) -> None:
    """The seed's "expose Prometheus metrics" and "health check HTTP endpoint": the tray's
    StatusServer on loopback. /metrics follows the service (up, ready, restarts, breaker)
    and the database; /health is 200 while the server runs ready, 503 naming it when its
    stream is refused or it is stopped; no secret in either."""
    spec = _fast(speech_server_spec(port, fault_file=fault))
    assert spec.health.readiness is not None
    readiness = dataclasses.replace(spec.health.readiness, interval_s=0.2, timeout_s=10.0)
    spec = dataclasses.replace(spec, health=dataclasses.replace(spec.health, readiness=readiness))

    async def get(server: StatusServer, path: str) -> httpx.Response:
        url = f"http://127.0.0.1:{server.port}{path}"
        return await asyncio.to_thread(httpx.get, url, timeout=30)

    def metric(text: str, name: str) -> float | None:
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                if name + "{" in line and f'service="{NAME}"' not in line and "table=" not in line:
                    continue
                return float(line.rsplit(" ", 1)[1])
        return None

    async def health_is(server: StatusServer, code: int) -> httpx.Response:
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            answer = await get(server, "/health")
            if answer.status_code == code:
                return answer
            assert asyncio.get_running_loop().time() < deadline, answer.text
            await asyncio.sleep(0.05)  # a poll interval, bounded by the deadline above

    async def scenario() -> None:
        async with tray_with(cfg, v1_config, spec) as tray:
            server = await StatusServer.start(tray)
            try:
                tray.db.insert_transcription("hello")
                before = await get(server, "/metrics")
                assert before.status_code == 200
                assert before.headers["content-type"].startswith("text/plain")
                assert metric(before.text, "voice_tray_service_up") == 0.0
                assert (await get(server, "/health")).status_code == 503
                await tray.supervisor.start(NAME)
                ok = await health_is(server, 200)
                assert ok.json()["services"][NAME]["state"] == "running"
                scraped = (await get(server, "/metrics")).text
                assert metric(scraped, "voice_tray_service_up") == 1.0
                assert metric(scraped, "voice_tray_service_ready") == 1.0
                assert 'voice_tray_rows{table="transcriptions"} 1.0' in scraped
                assert (metric(scraped, "voice_tray_database_bytes") or 0.0) > 0
                assert SENTINEL_KEY not in scraped + ok.text
                fault.write_text("no-stream", encoding="utf-8")
                degraded = await health_is(server, 503)
                assert degraded.json()["services"][NAME]["ready"] is False
                fault.write_text("ok", encoding="utf-8")
                await health_is(server, 200)
                await tray.supervisor.stop(NAME)
                stopped = await get(server, "/health")
                assert stopped.status_code == 503
                assert stopped.json()["services"][NAME]["state"] == "stopped"
                assert metric((await get(server, "/metrics")).text, "voice_tray_service_up") == 0.0
                assert (await get(server, "/nope")).status_code == 404
            finally:
                await server.close()

    asyncio.run(scenario())
