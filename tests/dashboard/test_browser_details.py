"""What a new user met in the dashboard's first hour (issue #16), each in a real Chromium
against the module's real daemon (``conftest.daemon``: echo, worker, crasher):

the skip link, the log view's reading position, "Load older" and an empty filter, the
timeline's spoken range, who did what, the favicon, the confirm dialog's focus, notices that
expire, and the pictures (service state strips, the database's size and backup-age charts).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import pytest

from bastion.store.samples import FULL_S, read_samples, samples_path
from tests.dashboard.conftest import Daemon, Session, wait_check_passed
from tests.dashboard.test_a11y import fill_logs
from tests.helpers import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.posix, pytest.mark.slow]


def show(page: Any, view: str) -> None:
    page.click(f'nav a[data-view="{view}"]')
    page.wait_for_selector(f'body[data-loaded="{view}"]')


def card(page: Any, name: str) -> Any:
    return page.locator(f'#services li[data-service="{name}"]')


# --- navigation ---------------------------------------------------------------------------


def test_skip_link_moves_focus_to_the_content_and_keeps_the_view(signed_in: Session) -> None:
    page = signed_in.page
    show(page, "logs")
    page.focus("a.skip")  # the first stop on the page, shown once it has the focus
    assert page.locator("a.skip").is_visible()
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # Still the Logs view: "#main" is not a view.
    assert page.get_attribute('nav a[data-view="logs"]', "aria-current") == "page"
    assert page.locator("#view-logs").is_visible()
    assert page.locator("#view-services").is_hidden()


# --- logs ---------------------------------------------------------------------------------

_AT_BOTTOM = """() => { const s = document.querySelector('#log-scroll');
  return s.scrollTop + s.clientHeight >= s.scrollHeight - 2; }"""
_NEWEST_ID = (
    "Math.max(...[...document.querySelectorAll('#log-lines li')].map(li => +li.dataset.id))"
)


def test_logs_open_at_the_newest_line_and_follow_until_scrolled_up(
    signed_in: Session, daemon: Daemon
) -> None:
    fill_logs(daemon)  # older than anything live: the list is long enough to scroll
    page = signed_in.page
    show(page, "logs")
    page.wait_for_selector("#log-status:has-text('Live')")
    scroll = page.locator("#log-scroll")
    assert page.evaluate(
        "(() => { const s = document.querySelector('#log-scroll'); return s.scrollHeight > s.clientHeight; })()"
    )
    # Opened at the bottom, where the newest line is.
    assert page.evaluate(_AT_BOTTOM)
    assert page.evaluate(
        f"+document.querySelector('#log-lines li:last-child').dataset.id === {_NEWEST_ID}"
    )
    # Following: the worker's next line arrives and the view is still at the bottom.
    newest = page.evaluate(_NEWEST_ID)
    page.wait_for_function(f"() => {_NEWEST_ID} > {newest}")
    page.wait_for_function(_AT_BOTTOM)
    assert page.locator("#log-newest").is_hidden()

    # The reader scrolls up: new lines no longer move the view; a control offers the way back.
    scroll.hover()
    page.mouse.wheel(0, -1500)
    page.wait_for_selector("#log-newest", state="visible")
    top = page.evaluate("document.querySelector('#log-scroll').scrollTop")
    newest = page.evaluate(_NEWEST_ID)
    page.wait_for_function(f"() => {_NEWEST_ID} > {newest}")
    page.wait_for_selector("#log-newest:has-text('new)')")
    assert page.evaluate("document.querySelector('#log-scroll').scrollTop") == top
    assert not page.evaluate(_AT_BOTTOM)

    page.click("#log-newest")
    page.wait_for_function(_AT_BOTTOM)
    assert page.locator("#log-newest").is_hidden()
    newest = page.evaluate(_NEWEST_ID)
    page.wait_for_function(f"() => {_NEWEST_ID} > {newest}")
    page.wait_for_function(_AT_BOTTOM)  # following again


def test_load_older_sits_above_the_oldest_line_and_keeps_the_place(
    signed_in: Session, daemon: Daemon
) -> None:
    marker = "older-" + secrets.token_hex(4)
    fill_logs(daemon, 150, message=marker)
    page = signed_in.page
    show(page, "logs")
    page.fill("#log-q", marker)
    page.click("#log-filter button[type=submit]")
    lines = page.locator("#log-lines li")
    wait_until(lambda: lines.count() == 100, timeout=60, what="the newest 100 lines")
    # Scrolled to the top of the list, "Load older" is right there, above the oldest line,
    # inside the scrolling list (not somewhere the reader has to go looking for it).
    page.evaluate("document.querySelector('#log-scroll').scrollTop = 0")
    button = page.locator("#log-scroll > #log-older")
    assert button.is_visible()
    first_line = lines.first.bounding_box()
    assert button.bounding_box()["y"] + button.bounding_box()["height"] <= first_line["y"]
    assert lines.first.inner_text().endswith(f"{marker} 50")
    # The line the reader was looking at stays where it was while older ones are added above.
    y_before = lines.first.bounding_box()["y"]
    first_id = lines.first.get_attribute("data-id")
    button.click()
    wait_until(lambda: lines.count() == 150, timeout=60, what="the 50 older lines")
    assert lines.first.inner_text().endswith(f"{marker} 0")
    anchor = page.locator(f'#log-lines li[data-id="{first_id}"]')
    assert abs(anchor.bounding_box()["y"] - y_before) < 2


def test_a_filter_that_matches_nothing_says_so(signed_in: Session) -> None:
    page = signed_in.page
    show(page, "logs")
    page.fill("#log-q", "no line says this " + secrets.token_hex(4))
    page.click("#log-filter button[type=submit]")
    page.wait_for_selector("#log-status:has-text('Live')")
    empty = page.locator("#log-empty")
    empty.wait_for()
    assert empty.inner_text().startswith("No lines match this filter (text “no line says this")
    assert page.inner_text("#log-status") == "Live: waiting for matching lines."
    # Nothing on the page (nor a CSS ::before) claims there are no log lines at all.
    assert "No log lines yet" not in page.inner_text("body")
    pseudo = page.evaluate(
        "[...document.querySelectorAll('#view-logs *')]"
        ".map(e => getComputedStyle(e, '::before').content).filter(c => c && c !== 'none')"
    )
    assert not [c for c in pseudo if "No log lines" in c]


# --- services -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "words"), [("600", "10 minutes"), ("3600", "hour"), ("86400", "day")]
)
def test_the_timeline_label_names_the_selected_range(
    signed_in: Session, value: str, words: str
) -> None:
    page = signed_in.page
    page.check(f'input[name="range"][value="{value}"]')
    svg = card(page, "echo").locator(".timeline-svg")
    page.wait_for_function(
        """words => document.querySelector('#services li[data-service="echo"] .timeline-svg')
             ?.getAttribute('aria-label')?.includes(`over the last ${words}:`)""",
        arg=words,
    )
    label = svg.get_attribute("aria-label") or ""
    assert label.startswith(f"State of echo over the last {words}: running")
    assert card(page, "echo").locator(".timeline-caption").inner_text() == (
        f"State over the last {words}"
    )
    assert "now" in svg.locator("text.axis-text").all_text_contents()


def test_each_strip_has_a_legend_and_marks_restarts(signed_in: Session) -> None:
    page = signed_in.page
    crasher = card(page, "crasher")
    page.wait_for_selector(
        '#services li[data-service="crasher"][data-state="open"]', timeout=60_000
    )
    # The badge says what the supervisor holds in memory; the strip is drawn from its journal,
    # which is written a moment later: wait for a strip drawn since the breaker's opening was
    # journaled (its newest change, listed in the same draw), not for the badge.
    page.wait_for_selector(
        '#services li[data-service="crasher"] .transitions li:first-child[data-to="open"]'
    )
    # Its crash loop: started, exited, waited, restarted (twice), then the breaker opened.
    svg = crasher.locator(".timeline-svg")
    restarts = int(svg.get_attribute("data-restarts") or "0")
    assert restarts >= 2
    assert svg.locator("path.restart").count() == restarts
    entry = crasher.locator(f'.timeline-legend li[data-restarts="{restarts}"]')
    assert entry.inner_text().endswith(f"restart ({restarts})")
    legend = crasher.locator(".timeline-legend li[data-state]").evaluate_all(
        "items => items.map(i => i.dataset.state)"
    )
    assert {"backoff", "open"} <= set(legend), legend
    # Every colour in the strip is explained in the legend, in words.
    colours = svg.locator("rect.seg").evaluate_all(
        "rs => [...new Set(rs.map(r => [...r.classList].find(c => c.startsWith('seg-')).slice(4)))]"
    )
    assert set(colours) == set(legend), (colours, legend)
    assert f"{restarts} restarts" in (svg.get_attribute("aria-label") or "")
    # A steady service reads as one colour over the whole range, with no restart marked.
    # The board loads every strip at once and the crasher's may be drawn before echo's.
    page.wait_for_selector('#services li[data-service="echo"] .timeline-svg[data-restarts]')
    echo = card(page, "echo").locator(".timeline-svg")
    assert echo.get_attribute("data-restarts") == "0"
    assert echo.locator("rect.seg-running").count() >= 1


# --- who did what -------------------------------------------------------------------------


def test_the_pages_actions_are_the_dashboards_in_who_did_what(signed_in: Session) -> None:
    page = signed_in.page
    show(page, "database")
    page.click("#db-check-run")
    wait_check_passed(page)
    show(page, "secrets")
    name = "WHO_" + secrets.token_hex(3).upper()
    page.fill("#secret-name", name)
    page.fill("#secret-value", "who-did-it")
    page.click("#secret-form button[type=submit]")
    page.wait_for_selector(f'#secrets-table tr[data-secret="{name}"]')
    show(page, "activity")
    check = page.locator('#activity li[data-action="db.check"]').first
    check.wait_for()
    assert check.inner_text().endswith("db.check · bastion · by dashboard")
    stored = page.locator(f'#activity li[data-action="secret.set"]:has-text("{name}")')
    assert stored.inner_text().endswith(f"secret.set · global/{name} · by dashboard")


# --- page furniture -----------------------------------------------------------------------


def test_the_favicon_is_there(signed_in: Session, daemon: Daemon) -> None:
    page = signed_in.page
    href = page.get_attribute('link[rel="icon"]', "href")
    assert href == "/dashboard/static/favicon.svg"
    assert page.evaluate("href => fetch(href).then(r => r.status)", href) == 200
    # What browsers and tools ask for without reading the page. (Playwright's request API:
    # Chromium under Playwright does not route a page's own /favicon.ico requests.)
    response = page.request.get(daemon.origin + "/favicon.ico")
    assert response.status == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.body().startswith(b"<svg")


def test_the_confirm_dialog_focuses_the_safe_button(signed_in: Session, daemon: Daemon) -> None:
    page = signed_in.page
    page.wait_for_selector('#services li[data-service="worker"][data-state="running"]')
    card(page, "worker").locator('button[data-action="stop"]').click()
    page.wait_for_selector("dialog#confirm[open]")
    assert page.evaluate("document.activeElement.id") == "confirm-cancel"
    # Enter right away is the safe choice: nothing is stopped.
    page.keyboard.press("Enter")
    page.wait_for_function("() => !document.querySelector('#confirm').open")
    assert page.evaluate("document.querySelector('#confirm').returnValue") == "cancel"
    stops = page.evaluate(
        "fetch('/v1/activity?action=service.stop&subject=worker').then(r => r.json())"
    )
    assert stops["items"] == []
    assert card(page, "worker").get_attribute("data-state") == "running"


def test_notices_expire_and_can_be_dismissed(signed_in: Session) -> None:
    page = signed_in.page
    page.wait_for_selector('#services li[data-service="echo"][data-state="running"]')
    card(page, "echo").locator('button[data-action="restart"]').click()
    notice = page.locator("#notice")
    notice.wait_for(state="visible")
    assert page.inner_text("#notice-text") == "restart requested for echo."
    notice.wait_for(state="hidden", timeout=30_000)  # gone by itself, nobody touched it
    page.wait_for_selector('#services li[data-service="echo"][data-state="running"]')
    card(page, "echo").locator('button[data-action="restart"]').click()
    notice.wait_for(state="visible")
    page.click("#notice-close")
    assert notice.is_hidden()


# --- database pictures --------------------------------------------------------------------


def test_database_view_charts_size_wal_and_backup_ages(signed_in: Session, daemon: Daemon) -> None:
    run_dir = daemon.config.run_dir
    # The daemon's scheduler records samples by itself (its first a few seconds after start).
    wait_until(lambda: read_samples(run_dir, "bastion"), timeout=60, what="a recorded sample")
    # Three more from the last hours, as the job would have left them.
    path = samples_path(run_dir, "bastion")
    data = json.loads(path.read_text())
    now = time.time()
    data["samples"][:0] = [
        {"ts": now - h * 3600, "size_bytes": 40_960 * h, "wal_bytes": 8192 * h, "free_bytes": 0}
        for h in (3, 2, 1)
    ]
    path.write_text(json.dumps(data))

    page = signed_in.page
    show(page, "database")
    chart = page.locator("#db-size-chart")

    def drawn_from_the_file() -> tuple[int, str] | None:
        # The daemon's own job may add a sample at any time (every 5 minutes): compare the
        # chart with the file as it is now; the view's next refresh draws one that was added
        # after the page read it. Its point count and its label come from one draw.
        recorded = len(read_samples(run_dir, "bastion", since=now - FULL_S))
        points, label = page.evaluate(
            """() => { const c = document.querySelector('#db-size-chart');
                       return [c.dataset.points, c.getAttribute('aria-label') || '']; }"""
        )
        return (recorded, label) if points == str(recorded + 1) else None

    # Every sample of the last day, plus the size read now.
    recorded, label = wait_until(
        drawn_from_the_file, timeout=60, what="the size chart drawn from every sample on file"
    )
    assert chart.locator("path.line-size").count() == 1
    assert chart.locator("path.line-wal").count() == 1
    assert label.startswith("Database file 120.0 KiB to ")
    assert f"({recorded} samples)" in label
    assert "24 h ago" in chart.locator("text.axis-text").all_text_contents()

    page.click("#backup-now")
    page.wait_for_selector("#backups-table tr[data-backup]", timeout=60_000)
    page.wait_for_function(
        """() => +document.querySelector('#backup-ages-chart')?.dataset.backups ===
             document.querySelectorAll('#backups-table tr[data-backup]').length"""
    )
    ages = page.locator("#backup-ages-chart")
    n = int(ages.get_attribute("data-backups") or "0")
    assert ages.locator("circle.dot-ok").count() == n
    assert page.inner_text("#backup-ages-summary").startswith(f"{n} backup")
    assert "verified" in page.inner_text("#backup-ages-summary")
