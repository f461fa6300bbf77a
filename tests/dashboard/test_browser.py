"""The dashboard in a real Chromium against a real ``bastion serve`` with real services.

Each test signs in with the link ``bastion dashboard`` prints, drives the page like a user
(clicks, forms, the keyboard) and checks the result both on the page and through the
library. Every page is checked for console errors, failed requests, HTTP errors and requests
to any origin but the daemon's (see ``conftest.PageWatch``).
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from bastion.vault import Vault
from tests.dashboard.conftest import (
    SCREENSHOTS,
    VIEWPORTS,
    Daemon,
    PageWatch,
    Session,
    login_url,
    wait_check_passed,
)
from tests.helpers import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.posix, pytest.mark.slow]

VIEWS = ("services", "logs", "secrets", "database", "activity")


def show(page: Any, view: str) -> None:
    page.click(f'nav a[data-view="{view}"]')
    page.wait_for_selector(f'body[data-loaded="{view}"]')


def card(view_page: Any, name: str) -> Any:
    return view_page.locator(f'#services li[data-service="{name}"]')


def test_sign_in_gives_an_httponly_strict_cookie_and_links_work_once(
    daemon: Daemon, chromium: Any
) -> None:
    context = chromium.new_context()
    try:
        page = context.new_page()
        watch = PageWatch(daemon.origin)
        watch.attach(context, page)
        url = login_url(daemon)
        page.goto(url)
        page.wait_for_selector("body[data-loaded]")
        assert page.url == daemon.origin + "/#services" or page.url == daemon.origin + "/"
        (cookie,) = context.cookies()
        assert cookie["name"] == f"bastion_session_{daemon.port}"
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert cookie["domain"] == "127.0.0.1"
        # HttpOnly: the page's own script cannot read it (nor could an injected one).
        assert page.evaluate("document.cookie") == ""
        watch.assert_clean()

        # The same link a second time, in a fresh browser profile: refused.
        other = chromium.new_context()
        try:
            second = other.new_page()
            response = second.goto(url)
            assert response is not None
            assert response.status == 401
            assert "already used" in second.content()
            assert other.cookies() == []
            # Without a session no API call succeeds from the page's origin either.
            status = second.evaluate("fetch('/v1/status').then(r => r.status)")
            assert status == 401
        finally:
            other.close()
    finally:
        context.close()


def test_serve_prints_a_working_sign_in_link(daemon: Daemon, chromium: Any) -> None:
    import re

    match = re.search(r"^dashboard: (http://\S+)$", daemon.log(), re.MULTILINE)
    assert match, daemon.log()
    url = match.group(1)
    assert url.startswith(daemon.origin + "/login?t=")
    context = chromium.new_context()
    try:
        page = context.new_page()
        watch = PageWatch(daemon.origin)
        watch.attach(context, page)
        page.goto(url)
        page.wait_for_selector("#daemon-info:has-text('pid')")
        assert len(context.cookies()) == 1
        watch.assert_clean()
    finally:
        context.close()


def test_page_cannot_be_driven_by_a_forged_request(signed_in: Session, daemon: Daemon) -> None:
    from bastion.store.backup import list_backups

    page = signed_in.page
    before = len(list_backups(daemon.config.backups_dir))
    # A mutation without the CSRF header is refused even with the session cookie.
    status = page.evaluate(
        """fetch('/v1/dashboard/backups', {method: 'POST', headers: {'Content-Type':
        'application/json'}, body: '{}'}).then(r => r.status)"""
    )
    assert status == 401
    # A form-encoded POST (what a cross-site form sends, without a preflight) is refused too.
    status = page.evaluate(
        """fetch('/v1/dashboard/backups', {method: 'POST', headers: {'Content-Type':
        'application/x-www-form-urlencoded'}, body: 'a=b'}).then(r => r.status)"""
    )
    assert status in {401, 415}
    assert len(list_backups(daemon.config.backups_dir)) == before
    # Both rejections were the point of this test; the browser reports them as errors.
    signed_in.watch.http_errors.clear()
    signed_in.watch.console_errors.clear()


def test_setting_a_secret_through_the_form_stores_it_and_never_shows_it(
    signed_in: Session, daemon: Daemon
) -> None:
    page = signed_in.page
    show(page, "secrets")
    value = "form-value-" + secrets.token_hex(16)
    page.fill("#secret-name", "DASH_FORM_KEY")
    page.fill("#secret-value", value)
    assert page.get_attribute("#secret-value", "type") == "password"
    page.click("#secret-form button[type=submit]")
    page.wait_for_selector('#secrets-table tr[data-secret="DASH_FORM_KEY"]')
    vault = Vault.open(daemon.config, env=daemon.env)
    try:
        assert vault.get("DASH_FORM_KEY").reveal() == value
        # The page shows metadata, never a value: not the new one, not the worker's.
        html = page.content()
        assert value not in html
        assert daemon.sentinel not in html
        assert page.input_value("#secret-value") == ""
        # No answer to any call the page made holds the value (PUT, lists, status...).
        bodies = signed_in.watch.response_bodies()
        assert len(bodies) >= 3
        assert not [b for b in bodies if value in b or daemon.sentinel in b]
        # Delete it again, through the confirmation dialog.
        page.click('#secrets-table tr[data-secret="DASH_FORM_KEY"] button')
        page.click("#confirm-ok")
        page.wait_for_selector('#secrets-table tr[data-secret="DASH_FORM_KEY"]', state="detached")
        assert not vault.exists("DASH_FORM_KEY")
    finally:
        vault.close()
    assert value not in daemon.log()


def test_back_up_now_lists_a_verified_backup(signed_in: Session, daemon: Daemon) -> None:
    from bastion.store.backup import list_backups

    page = signed_in.page
    show(page, "database")
    before = {b.path.name for b in list_backups(daemon.config.backups_dir)}
    page.click("#backup-now")  # turns itself off at once, on again when the job has ended
    page.wait_for_selector('#backup-now[data-enabled="true"]')
    # The page's backup by name: the daemon's own schedule (60 s after its start, then
    # hourly) may write one meanwhile, so "the new file" is not necessarily the page's.
    job = page.evaluate("fetch('/v1/dashboard/backups/job').then(r => r.json())")
    assert job["state"] == "done", job
    new = job["backup"]["name"]
    assert new in {b.path.name for b in list_backups(daemon.config.backups_dir)} - before
    row = page.locator(f'#backups-table tr[data-backup="{new}"]')
    row.wait_for()
    assert row.locator(".verified-yes").inner_text() == "verified"
    (info,) = [b for b in list_backups(daemon.config.backups_dir, deep=True) if b.path.name == new]
    assert info.verified
    assert "WAL size" in page.locator("#db-facts").inner_text()


def test_keyboard_reaches_every_view(signed_in: Session) -> None:
    page = signed_in.page
    page.focus('nav a[data-view="services"]')
    for view in VIEWS[1:]:
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.dataset.view") == view
        page.keyboard.press("Enter")
        page.wait_for_selector(f'body[data-loaded="{view}"]')
        assert page.get_attribute(f'nav a[data-view="{view}"]', "aria-current") == "page"


#: Each pair of neighbouring labels on one line of an axis that overlap: "picture: a over b".
_AXIS_OVERLAPS = """() => {
  const found = [];
  for (const svg of document.querySelectorAll("svg")) {
    const boxes = [...svg.querySelectorAll(".axis-text")]
      .map((t) => [t.textContent, t.getBoundingClientRect()])
      .filter(([, r]) => r.width > 0);
    for (let i = 1; i < boxes.length; i += 1) {
      const [a, ra] = boxes[i - 1];
      const [b, rb] = boxes[i];
      if (Math.abs(ra.top - rb.top) < 1 && ra.right > rb.left) {
        found.push(`${svg.closest("[id]").id}: '${a}' over '${b}'`);
      }
    }
  }
  return found;
}"""


@pytest.mark.parametrize("viewport", sorted(VIEWPORTS))
def test_screenshots_of_every_view(signed_in: Session, viewport: str) -> None:
    page = signed_in.page
    width, height = VIEWPORTS[viewport]
    page.set_viewport_size({"width": width, "height": height})
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for view in VIEWS:
        show(page, view)
        # Nothing overflows sideways: every view works at this width.
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{view} overflows by {overflow}px at {width}x{height}"
        # Nor does a picture's axis run its labels into each other (on a phone the size
        # chart's "24 h ago" covered "18 h ago").
        assert page.evaluate(_AXIS_OVERLAPS) == [], f"{view} at {width}x{height}"
        path = SCREENSHOTS / f"{view}-{width}x{height}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 5_000


def test_content_security_policy_keeps_the_page_on_its_origin(signed_in: Session) -> None:
    page = signed_in.page
    # Even script running in the page cannot reach another origin: the CSP's connect-src
    # refuses before any network traffic (the interceptor would record it otherwise).
    outcome = page.evaluate(
        """fetch('http://127.0.0.2:9/steal').then(() => 'sent', e => 'blocked: ' + e.name)"""
    )
    assert outcome == "blocked: TypeError"
    assert signed_in.watch.foreign == []
    # The browser reports the refusal on the console; that report was this test's point.
    assert any("Content Security Policy" in m for m in signed_in.watch.console_errors)
    signed_in.watch.console_errors.clear()
    signed_in.watch.failed.clear()


def test_load_older_pages_back_through_the_log_api(signed_in: Session, daemon: Daemon) -> None:
    import time

    from bastion.domains.logs.repo import LogRecord, LogsRepo
    from bastion.store import Database

    marker = "bulk-" + secrets.token_hex(4)
    now = time.time() - 3600  # older than anything the services print
    db = Database.open(daemon.config.db_path, daemon.config.store, name="test-writer")
    try:
        LogsRepo(db).insert_batch(
            LogRecord(
                ts=now + i, level="info", source="bulk", stream="stdout", message=f"{marker} {i}"
            )
            for i in range(150)
        )
    finally:
        db.close()
    page = signed_in.page
    show(page, "logs")
    page.fill("#log-q", marker)
    page.click("#log-filter button[type=submit]")
    lines = page.locator("#log-lines li")
    wait_until(
        lambda: lines.count() == 100 and lines.first.inner_text().endswith(f"{marker} 50"),
        timeout=60,
        what=f"the newest 100 {marker} lines",
    )
    assert page.is_enabled("#log-older")
    page.click("#log-older")
    wait_until(lambda: lines.count() == 150, timeout=60, what="the 50 older lines")
    assert lines.first.inner_text().endswith(f"{marker} 0")
    assert lines.last.inner_text().endswith(f"{marker} 149")
    wait_until(lambda: not page.is_enabled("#log-older"), timeout=60, what="no older page")


def test_last_check_result_survives_a_reload(signed_in: Session, daemon: Daemon) -> None:
    page = signed_in.page
    show(page, "database")
    page.click("#db-check-run")
    wait_check_passed(page)
    assert page.inner_text("#db-check").startswith("Last quick check: ok")
    with signed_in.watch.navigating():  # the view's refresh may have reads out
        page.reload()
    page.wait_for_selector('body[data-loaded="database"]')
    wait_check_passed(page)
    assert page.inner_text("#db-check").startswith("Last quick check: ok")


def test_sign_out_ends_the_session(signed_in: Session, daemon: Daemon) -> None:
    page = signed_in.page
    signed_in.watch.expected_http_errors.add(daemon.origin + "/")
    page.click("#logout")
    page.wait_for_selector("main.signin")
    assert "You are not signed in." in page.content()
    assert page.evaluate("fetch('/v1/status').then(r => r.status)") == 401
    signed_in.watch.http_errors.clear()  # the probe above was refused, as it must be
    signed_in.watch.console_errors[:] = [
        m for m in signed_in.watch.console_errors if "401" not in m
    ]


def test_every_control_has_an_accessible_name(signed_in: Session) -> None:
    page = signed_in.page
    for view in VIEWS:
        show(page, view)
        unnamed = page.evaluate(
            """() => [...document.querySelectorAll('input, select, button, a[href]')]
                .filter(e => e.offsetParent !== null)
                .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                             && !e.textContent.trim())
                .map(e => e.outerHTML.slice(0, 80))"""
        )
        assert unnamed == [], f"{view}: {unnamed}"
        # One h1 for the page, one h2 per view: headings give the structure.
        assert page.locator("h1").count() == 1
        assert page.locator(f"[data-view-panel='{view}'] h2").count() == 1
