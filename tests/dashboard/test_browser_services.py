"""The services board and the live log tail in Chromium, against real supervised services.

The module's daemon (``conftest.daemon``) runs three services: ``echo`` (HTTP probe),
``worker`` (prints a line every 0.5 s, and once the injected secret) and ``crasher`` (exits at
once; two restarts allowed, then the breaker opens for ten minutes).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.dashboard.conftest import SENTINEL_NAME, Daemon, Session
from tests.helpers import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.posix, pytest.mark.slow]


def show(page: Any, view: str) -> None:
    page.click(f'nav a[data-view="{view}"]')
    page.wait_for_selector(f'body[data-loaded="{view}"]')


def card(page: Any, name: str) -> Any:
    return page.locator(f'#services li[data-service="{name}"]')


def test_services_listed_with_their_states(signed_in: Session) -> None:
    page = signed_in.page
    for name in ("echo", "worker"):
        page.wait_for_selector(f'#services li[data-service="{name}"][data-state="running"]')
        badge = card(page, name).locator(".state")
        assert badge.inner_text().strip().lower() == "running"  # text, not colour alone
    # The supervisor's reason for the current state is shown next to it.
    assert card(page, "echo").locator(".reason").inner_text().startswith("running")
    # Each probe's latest result, with its latency: echo has an HTTP liveness probe.
    probe = card(page, "echo").locator(".probes li", has_text="liveness http: ok")
    probe.wait_for(timeout=30_000)
    assert " ms" in probe.inner_text()
    # Every declared service is on the board, the crash-looper too.
    names = page.locator("#services li[data-service]").evaluate_all(
        "items => items.map(i => i.dataset.service)"
    )
    assert sorted(names) == ["crasher", "echo", "worker"]


def test_crash_looper_shows_backoff_then_open(signed_in: Session) -> None:
    page = signed_in.page
    crasher = '#services li[data-service="crasher"]'
    # Its first crash loop ends with the breaker open (it may be over before the page opened).
    page.wait_for_selector(f'{crasher}[data-state="open"]', timeout=60_000)
    # Record every state the board shows from now on, then start it again from the board:
    # an operator start resets the breaker, and the loop runs once more under our eyes.
    page.evaluate(
        """sel => {
            window.__seen = [];
            const node = document.querySelector(sel);
            // Each record's old value, then the current one: changes made in one task
            // (two SSE events in one read) are all kept, not just the last.
            new MutationObserver((records) => {
                for (const r of records) window.__seen.push(r.oldValue);
                window.__seen.push(node.dataset.state);
            }).observe(node, {attributes: true, attributeFilter: ['data-state'],
                               attributeOldValue: true});
        }""",
        crasher,
    )
    page.locator(f'{crasher} button[data-action="start"]').click()
    page.wait_for_function(
        "() => window.__seen.includes('backoff') && window.__seen.at(-1) === 'open'",
        timeout=60_000,
    )
    seen = page.evaluate("window.__seen")
    assert seen.index("backoff") < len(seen) - 1
    text = page.locator(f"{crasher} .state").inner_text().strip().lower()
    assert text == "open"
    # The next poll fills in what the live event does not carry: the time to half-open.
    page.wait_for_selector(f"{crasher} .breaker:has-text('half-open in')")
    page.wait_for_selector(f"{crasher} .transitions li:first-child[data-to='open']")
    steps = page.locator(f"{crasher} .transitions li").evaluate_all(
        "items => items.map(i => i.dataset.to)"
    )
    # The list is newest first.
    assert steps[0] == "open"
    assert "backoff" in steps


def test_restart_from_the_board_moves_through_states(signed_in: Session) -> None:
    page = signed_in.page
    page.wait_for_selector('#services li[data-service="echo"][data-state="running"]')
    # The badge comes from the status route and the timeline from the events query: on a
    # loaded machine the badge can say RUNNING before the timeline has the start's entries.
    # Count from a timeline that has caught up, or the start's entries look like the restart's.
    page.wait_for_selector(
        '#services li[data-service="echo"] .transitions li:first-child[data-to="running"]'
    )
    echo = card(page, "echo")
    before = int(echo.locator(".transitions").get_attribute("data-count") or "0")
    pid_before = echo.locator(".pid").inner_text()
    echo.locator('button[data-action="restart"]').click()
    # Done when the timeline has the restart's entries and its newest one is RUNNING again.
    page.wait_for_function(
        """before => {
            const list = document.querySelector('#services li[data-service="echo"] .transitions');
            return +list.dataset.count >= before + 3 && list.firstElementChild.dataset.to === 'running';
        }""",
        arg=before,
        timeout=30_000,
    )
    page.wait_for_selector('#services li[data-service="echo"][data-state="running"]')
    wait_until(
        lambda: (
            echo.locator(".pid").inner_text().isdigit()
            and echo.locator(".pid").inner_text() != pid_before
        ),
        timeout=15,
        what="a new pid on the board",
    )
    after = int(echo.locator(".transitions").get_attribute("data-count") or "0")
    newest_first = echo.locator(".transitions li").evaluate_all(
        "items => items.map(i => i.dataset.to)"
    )
    added = list(reversed(newest_first[: after - before]))
    # RUNNING -> STOPPING -> ... -> STARTING -> RUNNING, each one an entry on the card's
    # timeline (the badge itself may skip a sub-second state between two updates).
    assert added[0] == "stopping", added
    assert "starting" in added, added
    assert added[-1] == "running", added
    assert int(echo.locator(".timeline-svg").get_attribute("data-events") or "0") == after


def test_stop_asks_for_confirmation(signed_in: Session) -> None:
    page = signed_in.page
    page.wait_for_selector('#services li[data-service="worker"][data-state="running"]')
    worker = card(page, "worker")
    worker.locator('button[data-action="stop"]').click()
    dialog = page.locator("dialog#confirm")
    assert dialog.is_visible()
    assert "Stop worker?" in dialog.inner_text()
    page.keyboard.press("Escape")  # cancel with the keyboard: nothing happens
    assert not dialog.is_visible()
    assert worker.get_attribute("data-state") == "running"


def test_a_page_opened_at_the_logs_view_offers_every_service_in_its_filter(
    signed_in: Session, daemon: Daemon
) -> None:
    page = signed_in.page
    # A bookmark or a link straight to the logs: a document that never showed the board,
    # whose list was what filled the filter.
    with signed_in.watch.navigating():  # the board's reads still out are aborted by it
        page.goto(f"{daemon.origin}/#logs")
        page.reload()
    page.wait_for_selector('body[data-loaded="logs"]')
    assert page.locator("#services li[data-service]").count() == 0
    offered = page.locator("#log-service option").evaluate_all("os => os.map(o => o.value)")
    assert offered[0] == ""  # "all" first
    assert sorted(offered[1:]) == ["crasher", "echo", "worker"]
    page.select_option("#log-service", "worker")
    page.click("#log-filter button[type=submit]")
    page.wait_for_selector("#log-lines li:has-text('worker')")


def test_log_tail_shows_new_lines_with_secrets_redacted(signed_in: Session, daemon: Daemon) -> None:
    page = signed_in.page
    # The log view's service filter lists the services the board has read: leaving the board
    # before its first list answered would leave the filter without the worker.
    page.wait_for_selector('#log-service option[value="worker"]', state="attached")
    show(page, "logs")
    page.wait_for_selector("#log-status:has-text('Live')")
    last_id = page.evaluate(
        "Math.max(0, ...[...document.querySelectorAll('#log-lines li')].map(li => +li.dataset.id || 0))"
    )
    # The worker prints a line every 0.5 s: a new one arrives over SSE. (The page's default
    # wait is a hang detector; how soon the line comes depends on the machine's load, so a
    # tight limit here would be a timing assertion.)
    page.wait_for_function(
        """last => [...document.querySelectorAll('#log-lines li')]
              .some(li => (+li.dataset.id || 0) > last && li.textContent.includes('worker'))""",
        arg=last_id,
    )
    # The worker printed the injected secret at start: only its redaction is on the page.
    page.select_option("#log-service", "worker")
    page.fill("#log-q", "api key")
    page.click("#log-filter button[type=submit]")
    page.wait_for_selector(f"#log-lines li:has-text('[REDACTED:{SENTINEL_NAME}]')")
    assert daemon.sentinel not in page.content()
    # Pause stops new lines from being added.
    page.click("#log-pause")
    assert page.get_attribute("#log-pause", "aria-pressed") == "true"
