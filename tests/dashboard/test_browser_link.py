"""The page when its daemon goes away: stopped (SIGTERM), or hung (SIGSTOP), then back.

Each test runs its own ``bastion serve`` (it is stopped on purpose) on a fixed port, so a
restarted daemon is at the same address the page keeps asking. What must hold while it is
gone: one clear "not answering" banner (never the browser's "Failed to fetch."), every
action off, no service badge claiming a state nobody can see, and retries of ``/health``
that wait longer each time. When it answers again: a hung daemon's page carries on with its
session; a restarted daemon has ended every sign-in, and the page says so and how to sign in.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.demo import free_port
from tests.dashboard.conftest import (
    FILE_VAULT_TOML,
    Daemon,
    Session,
    file_vault_env,
    open_page,
    spawn_daemon,
    stop_daemon,
)
from tests.dashboard.test_a11y import serious_violations

pytestmark = [pytest.mark.browser, pytest.mark.posix, pytest.mark.slow]

WORKER = '#services li[data-service="worker"]'
#: What a browser reports for requests to a daemon that is gone or does not answer in time.
_GONE = ("ERR_CONNECTION_REFUSED", "ERR_CONNECTION_RESET", "ERR_EMPTY_RESPONSE", "ERR_ABORTED")


@pytest.fixture
def lone_daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon with one worker service on a port of its own, stopped by the test."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "bastion.toml").write_text(FILE_VAULT_TOML)
    services = home / "services"
    services.mkdir(mode=0o700)
    argv = [sys.executable, "-m", "bastion.demo.worker", "--interval", "1"]
    (services / "worker.toml").write_text(f"argv = {json.dumps(argv)}\n")
    running = spawn_daemon(home, file_vault_env(), tmp_path / "daemon.log", port=free_port())
    try:
        yield running
    finally:
        stop_daemon(running.proc)


def expect_gone_noise(session: Session, *, signed_out: bool = False) -> None:
    """Requests that failed because the daemon was gone are this test's point, not a fault
    (and, after a restart, the one 401 that tells the page its session ended); anything else,
    and every uncaught script error, still fails the test."""
    watch = session.watch
    expected = _GONE + (("401",) if signed_out else ())
    watch.failed[:] = [f for f in watch.failed if not any(code in f for code in _GONE)]
    watch.console_errors[:] = [m for m in watch.console_errors if not any(c in m for c in expected)]
    if signed_out:
        watch.http_errors[:] = [e for e in watch.http_errors if not e.startswith("401 ")]


def assert_unreachable_state(page: Any) -> None:
    page.wait_for_selector('body[data-daemon="unreachable"]', timeout=45_000)
    banner = page.locator("#link-banner")
    assert banner.is_visible()
    assert "is not answering" in banner.inner_text()
    # No state the page cannot see any more: every badge says so.
    badges = page.locator("#services .state").evaluate_all("bs => bs.map(b => b.dataset.state)")
    assert badges
    assert set(badges) == {"unknown"}, badges
    texts = page.locator("#services .state").all_inner_texts()
    assert {t.strip().lower() for t in texts} == {"unknown"}, texts
    reasons = page.locator("#services .reason").all_inner_texts()
    assert all(r.startswith("state unknown: daemon unreachable") for r in reasons), reasons
    # Every action is off, on every view.
    assert page.locator("#services button[data-action]:enabled").count() == 0
    assert page.is_disabled("#logout")
    for control in ("#backup-now", "#db-check-run", "#secret-form button[type=submit]"):
        assert page.is_disabled(control), control
    body = page.locator("body").inner_text()
    assert "Failed to fetch" not in body
    assert "NetworkError" not in body


def test_a_stopped_daemon_shows_unreachable_retries_with_backoff_and_its_return(
    lone_daemon: Daemon, chromium: Any
) -> None:
    daemon = lone_daemon
    with open_page(chromium, daemon) as session:
        page = session.page
        page.wait_for_selector(f'{WORKER}[data-state="running"]', timeout=30_000)
        assert page.locator(f'{WORKER} button[data-action="stop"]').is_enabled()
        # Every delay the page announces before its next try, in order.
        page.evaluate(
            """() => {
                window.__delays = [];
                const node = document.querySelector('#link-banner');
                new MutationObserver(() => window.__delays.push(+node.dataset.retryS))
                  .observe(node, {attributes: true, attributeFilter: ['data-attempt']});
            }"""
        )
        stop_daemon(daemon.proc)
        assert_unreachable_state(page)
        assert serious_violations(page) == []
        # Tries again, waiting longer each time: 1 s, 2 s, 4 s ...
        page.wait_for_function("() => window.__delays.length >= 3", timeout=30_000)
        delays = page.evaluate("window.__delays")
        assert delays[:3] == [1, 2, 4], delays
        assert page.locator("#link-retry").inner_text().startswith("Trying again")
        assert_unreachable_state(page)  # still: nothing came back in between

        # The daemon comes back at the same address; the page notices on its own. A restart
        # ends every sign-in, and the page says exactly that instead of failing requests.
        back = spawn_daemon(daemon.home, daemon.env, daemon.log_path, port=daemon.port)
        try:
            page.wait_for_selector("#link-text:has-text('was restarted')", timeout=60_000)
            assert page.get_attribute("body", "data-daemon") is None
            assert "bastion dashboard" in page.inner_text("#link-text")
            assert page.locator("#services button[data-action]:enabled").count() == 0
            expect_gone_noise(session, signed_out=True)
            session.watch.assert_clean()
            # A new link signs in again and the board is live.
            page.goto(_login(back))
            page.wait_for_selector(f'{WORKER}[data-state="running"]', timeout=30_000)
            assert page.locator("#link-banner").is_hidden()
        finally:
            stop_daemon(back.proc)
        expect_gone_noise(session, signed_out=True)


def test_a_hung_daemon_is_unreachable_and_the_page_recovers_when_it_answers(
    lone_daemon: Daemon, chromium: Any
) -> None:
    daemon = lone_daemon
    with open_page(chromium, daemon) as session:
        page = session.page
        page.wait_for_selector(f'{WORKER}[data-state="running"]', timeout=30_000)
        os.kill(daemon.proc.pid, signal.SIGSTOP)
        try:
            # Connections are accepted by the kernel but nothing answers: the page's reads
            # time out, and that counts as unreachable too.
            assert_unreachable_state(page)
        finally:
            os.kill(daemon.proc.pid, signal.SIGCONT)
        # Same process, same sessions: the page picks up where it was, by itself.
        page.wait_for_selector("#link-banner", state="hidden", timeout=60_000)
        assert "answering again" in page.inner_text("#notice-text")
        page.wait_for_selector(f'{WORKER}[data-state="running"]', timeout=30_000)
        page.wait_for_selector(f'{WORKER} button[data-action="stop"]:enabled')
        assert page.is_enabled("#logout")
        assert page.get_attribute("body", "data-daemon") is None
        # And the live parts run again: a new log line arrives over the stream.
        page.click('nav a[data-view="logs"]')
        page.wait_for_selector("#log-status:has-text('Live')")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#log-lines li')].some(li => li.textContent.includes('tick'))"
        )
        expect_gone_noise(session)


def _login(daemon: Daemon) -> str:
    from tests.dashboard.conftest import login_url

    return login_url(daemon)
