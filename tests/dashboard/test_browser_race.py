"""A view's load that answers after the reader has moved on, in a real Chromium against the
module's real daemon (``conftest.daemon``), made to happen every time instead of by timing.

``body[data-loaded]`` names the view whose data is on screen (tests and assistive tools wait
for it). A load still in flight when another view was chosen, or when the same view was
entered again, must not set it when it answers late, nor leave a refresh timer behind; nor
may it put back what it read over something newer the page shows since (a strip drawn for
another range, a check run or a backup taken from the page, a secret just stored, this
visit's states and events).

How the race is forced: :class:`Parked` holds a view's data request in Playwright's request
routing before it leaves the page, so the load is still in flight for as long as the test
wants; the test changes views, waits for the new view to show as loaded, then lets the
parked request go to the daemon (or, with ``answered=True``, delivers the answer the daemon
gave when the page asked, read at once and held). Whether the page has finished with the
late answer is read from the page itself (:data:`COUNT_FETCHES`), so nothing waits a fixed
time and nothing asserts on timing.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.dashboard.conftest import Daemon, Session, open_page, wait_check_passed
from tests.helpers import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.posix, pytest.mark.slow]

#: Counts the page's fetches that are not finished: not answered, or answered and the body
#: read, but the code awaiting it not yet run up to its next wait. The count goes down in a
#: task queued after the body was read, so every promise continuation the answer started
#: (rendering, the next requests of the same load, marking the view loaded) has run by then,
#: and the next requests have been counted. Zero (or the number of parked requests) means the
#: page has done everything its answers asked for.
COUNT_FETCHES = """(() => {
  const realFetch = window.fetch;
  let pending = 0;
  window.__unfinishedFetches = () => pending;
  const finished = () => { setTimeout(() => { pending -= 1; }, 0); };
  window.fetch = function (...args) {
    pending += 1;
    return realFetch.apply(this, args).then((response) => {
      let done = false;
      for (const name of ["text", "json"]) {
        const read = response[name].bind(response);
        response[name] = () => read().finally(() => { if (!done) { done = true; finished(); } });
      }
      return response;
    }, (err) => { finished(); throw err; });
  };
})();"""

#: One request each view's load makes (and no other view's load makes).
VIEW_REQUEST = {
    "services": "/v1/services",
    "secrets": "/v1/secrets/status",
    "database": "/v1/db/status",
    "activity": "/v1/activity",
}
OTHER_VIEWS = list(VIEW_REQUEST)


class Parked:
    """The page's requests for one path, held before they leave the page until released.

    Released requests go on through the context's routing (``PageWatch``), so they reach the
    daemon and are checked like every other request. Holding is what :meth:`close` ends."""

    def __init__(
        self,
        page: Any,
        path: str,
        query: Callable[[dict[str, list[str]]], bool] | None = None,
        *,
        answered: bool = False,
    ) -> None:
        self.page = page
        self.path = path
        self.query = query
        #: Sent to the daemon at once, its answer held instead: the page gets, late, what the
        #: daemon said when the page asked.
        self.answered = answered
        self.answers: dict[int, Any] = {}
        self.routes: list[Any] = []
        self.released: set[int] = set()
        page.route(self._matches, self._park)

    def _matches(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.path == self.path and (self.query is None or self.query(parse_qs(parts.query)))

    def _park(self, route: Any) -> None:
        self.routes.append(route)
        if self.answered:
            self.answers[len(self.routes) - 1] = route.fetch()

    def count(self) -> int:
        self.page.evaluate("0")  # lets Playwright deliver the routing calls it holds
        return len(self.routes)

    def wait(self, n: int) -> None:
        wait_until(
            lambda: self.count() >= n, timeout=60, what=f"request {n} for {self.path} parked"
        )

    def held(self) -> int:
        return len(self.routes) - len(self.released)

    def release(self, index: int) -> None:
        assert index not in self.released
        self.released.add(index)
        if index in self.answers:
            self.routes[index].fulfill(response=self.answers[index])
        else:
            self.routes[index].fallback()

    def close(self) -> None:
        """Stop holding; let every request still held go (to the daemon directly: after a
        failed test the page may be closing, and a request it dropped is no finding)."""
        from playwright.sync_api import Error

        self.page.unroute(self._matches, self._park)
        for index, route in enumerate(self.routes):
            if index not in self.released:
                self.released.add(index)
                with contextlib.suppress(Error):
                    if index in self.answers:
                        route.fulfill(response=self.answers[index])
                    else:
                        route.continue_()


@pytest.fixture
def counting(daemon: Daemon, chromium: Any) -> Iterator[Session]:
    """A signed-in page (on the services view) that counts its unfinished fetches."""
    with open_page(chromium, daemon, init_script=COUNT_FETCHES) as session:
        # The crasher's breaker opens within seconds of the daemon's start; after that no
        # transition arrives on the board's stream to start loads of its own.
        session.page.wait_for_selector(
            '#services li[data-service="crasher"][data-state="open"]', timeout=60_000
        )
        session.page.wait_for_selector('body[data-loaded="services"]')
        yield session


@pytest.fixture
def parked_pages() -> Iterator[list[Parked]]:
    """Every :class:`Parked` a test makes is closed at its end, even when it fails."""
    made: list[Parked] = []
    yield made
    for parked in made:
        parked.close()


def park(
    made: list[Parked],
    page: Any,
    path: str,
    query: Callable[[dict[str, list[str]]], bool] | None = None,
    *,
    answered: bool = False,
) -> Parked:
    parked = Parked(page, path, query, answered=answered)
    made.append(parked)
    return parked


def settle(page: Any, parked: Parked) -> None:
    """Wait until the page has finished with every answer it got: only parked requests left."""
    wait_until(
        lambda: page.evaluate("window.__unfinishedFetches()") == parked.held(),
        timeout=60,
        what="the page to finish with the answers it got",
    )


def click(page: Any, view: str) -> None:
    page.click(f'nav a[data-view="{view}"]')


def show(page: Any, view: str) -> None:
    click(page, view)
    page.wait_for_selector(f'body[data-loaded="{view}"]')


def assert_showing(page: Any, view: str) -> None:
    assert page.get_attribute("body", "data-loaded") == view
    assert page.get_attribute(f'nav a[data-view="{view}"]', "aria-current") == "page"
    shown = page.locator("[data-view-panel]:not([hidden])").evaluate_all(
        "panels => panels.map(p => p.dataset.viewPanel)"
    )
    assert shown == [view]


# --- a load answered after another view was chosen ----------------------------------------


@pytest.mark.parametrize("view", OTHER_VIEWS)
def test_a_views_load_answered_after_the_logs_view_was_chosen_leaves_logs_loaded(
    counting: Session, parked_pages: list[Parked], view: str
) -> None:
    page = counting.page
    if view == "services":  # start elsewhere, so that choosing services loads it
        show(page, "activity")
    parked = park(parked_pages, page, VIEW_REQUEST[view])
    click(page, view)
    parked.wait(1)  # the view's load is in flight and stays so
    show(page, "logs")
    parked.release(0)
    settle(page, parked)
    assert_showing(page, "logs")


@pytest.mark.parametrize("view", OTHER_VIEWS)
def test_a_logs_load_answered_after_another_view_was_chosen_leaves_that_view_loaded(
    counting: Session, parked_pages: list[Parked], view: str
) -> None:
    page = counting.page
    parked = park(parked_pages, page, "/v1/logs")
    click(page, "logs")
    parked.wait(1)  # the log view's first page is in flight and stays so
    show(page, view)
    parked.release(0)
    settle(page, parked)
    assert_showing(page, view)


# --- an earlier load answered after the same view was entered again -----------------------


def test_an_earlier_load_does_not_mark_a_view_entered_again_loaded_before_its_own_load(
    counting: Session, parked_pages: list[Parked]
) -> None:
    page = counting.page
    show(page, "activity")
    parked = park(parked_pages, page, VIEW_REQUEST["services"])
    click(page, "services")
    parked.wait(1)
    show(page, "logs")
    click(page, "services")  # back again: a second load, also held
    parked.wait(2)
    parked.release(0)  # the first load answers: it is not this visit's
    settle(page, parked)
    assert page.get_attribute("body", "data-loaded") is None
    parked.close()
    page.wait_for_selector('body[data-loaded="services"]')
    assert_showing(page, "services")


def test_an_earlier_logs_load_does_not_mark_the_logs_view_entered_again_loaded(
    counting: Session, parked_pages: list[Parked]
) -> None:
    page = counting.page
    parked = park(parked_pages, page, "/v1/logs")
    click(page, "logs")
    parked.wait(1)
    show(page, "activity")
    click(page, "logs")  # back again: the log view starts over, its first page also held
    parked.wait(2)
    parked.release(0)  # the first visit's page answers: the list is no longer its
    settle(page, parked)
    assert page.get_attribute("body", "data-loaded") is None
    # Nor does it say Live before the lines before the stream are on screen.
    assert page.inner_text("#log-status") == "Loading…"
    parked.close()
    page.wait_for_selector('body[data-loaded="logs"]')
    assert_showing(page, "logs")
    page.wait_for_selector("#log-status:has-text('Live')")


def test_a_first_page_answered_after_a_new_filter_does_not_mark_the_logs_view_loaded(
    counting: Session, parked_pages: list[Parked]
) -> None:
    page = counting.page
    parked = park(parked_pages, page, "/v1/logs")
    click(page, "logs")
    parked.wait(1)
    page.fill("#log-q", "worker")  # a filter chosen before the first page came
    page.click("#log-filter button[type=submit]")
    parked.wait(2)
    parked.release(0)  # the unfiltered page answers: not what the view now shows
    settle(page, parked)
    assert page.get_attribute("body", "data-loaded") is None
    assert page.inner_text("#log-status") == "Loading…"
    parked.release(1)
    page.wait_for_selector('body[data-loaded="logs"]')
    assert_showing(page, "logs")


# --- what a view's load writes besides the marker -------------------------------------------

#: A POST through the API the way the page sends one (its session's CSRF header): a check
#: run, an action on a service. Its status.
POST_AS_PAGE = """async ([path, body]) => {
  const session = await (await fetch("/dashboard/session", { credentials: "same-origin" })).json();
  const response = await fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", [session.csrf_header || "x-bastion-csrf"]: session.csrf_token },
    body: JSON.stringify(body),
  });
  await response.text();
  return response.status;
}"""


def test_a_database_load_answered_after_a_check_ran_does_not_show_the_older_check(
    counting: Session, parked_pages: list[Parked]
) -> None:
    page = counting.page
    show(page, "database")
    # The last check on record is an integrity check...
    assert page.evaluate(POST_AS_PAGE, ["/v1/dashboard/checks", {"kind": "integrity"}]) == 200
    # ... and a refresh of the view reads it, while one of its other reads is held.
    parked = park(parked_pages, page, VIEW_REQUEST["database"])
    parked.wait(1)
    settle(page, parked)  # every other read of that refresh has its answer
    # Meanwhile the reader runs a quick check from the page: its answer is on show.
    page.click("#db-check-run")
    wait_check_passed(page)
    assert page.inner_text("#db-check").startswith("Last quick check: ok")
    parked.close()  # the refresh answers, with the integrity check as the last on record
    settle(page, parked)
    # Still the quick check. (Not the same words: a refresh after the late one may show it
    # again, with the time the daemon recorded it instead of the time its answer came.)
    assert page.inner_text("#db-check").startswith("Last quick check: ok")
    assert page.get_attribute("#db-check", "data-ok") == "true"


def record_old_transition(daemon: Daemon, service: str, hours_ago: float) -> None:
    """A transition of ``service`` that long ago, in the daemon's database (another process
    writing it, as a CLI would)."""
    import time

    from bastion.domains.events.repo import EventsRepo
    from bastion.store import Database

    db = Database.open(daemon.config.db_path, daemon.config.store, name="race-writer")
    try:
        EventsRepo(db).emit(
            "service.transition",
            service,
            {"from": "backoff", "to": "starting", "reason": "an old restart"},
            ts=time.time() - hours_ago * 3600,
        )
    finally:
        db.close()


def test_a_strip_read_for_the_range_before_is_not_drawn_over_the_range_chosen_since(
    counting: Session, parked_pages: list[Parked], daemon: Daemon
) -> None:
    # Two hours ago: inside the last day, outside the last hour (the range on show).
    record_old_transition(daemon, "echo", hours_ago=2)
    page = counting.page
    echo = '#services li[data-service="echo"]'
    assert page.is_checked('input[name="range"][value="3600"]')
    # A refresh's read of echo's changes over the last hour is held...
    parked = park(
        parked_pages, page, "/v1/events", lambda q: q.get("subject") == ["echo"] and "since" in q
    )
    parked.wait(1)
    # ... while the reader picks the last day: that read answers and is drawn.
    page.check('input[name="range"][value="86400"]')
    parked.wait(2)
    parked.release(1)
    page.wait_for_function(
        """sel => document.querySelector(sel + ' .timeline-svg')
             ?.getAttribute('aria-label')?.includes('over the last day:')""",
        arg=echo,
    )
    day = page.get_attribute(f"{echo} .transitions", "data-count")
    label = page.get_attribute(f"{echo} .timeline-svg", "aria-label")
    parked.release(0)  # the hour's read answers late
    settle(page, parked)
    # The strip still shows the last day, the two-hour-old change counted.
    assert page.get_attribute(f"{echo} .transitions", "data-count") == day
    assert page.get_attribute(f"{echo} .timeline-svg", "aria-label") == label


def test_a_database_load_answered_after_a_backup_does_not_hide_it(
    counting: Session, parked_pages: list[Parked]
) -> None:
    page = counting.page
    show(page, "database")
    rows = page.locator("#backups-table tr[data-backup]")

    def listed() -> set[str]:
        return set(rows.evaluate_all("rs => rs.map(r => r.dataset.backup)"))

    parked = park(parked_pages, page, VIEW_REQUEST["database"])
    parked.wait(1)
    settle(page, parked)  # that refresh has its list of backups: without the next one
    page.click("#backup-now")  # turns itself off at once, on again when the list is shown
    page.wait_for_selector('#backup-now[data-enabled="true"]')
    # The page's backup by name (the daemon's own schedule may add one at any time, 60 s
    # after its start and then hourly, so counting rows does not say which is the page's).
    new = page.evaluate("fetch('/v1/dashboard/backups/job').then(r => r.json())")["backup"]["name"]
    assert new in listed()
    parked.close()  # the refresh answers, with the list as it was before the backup
    settle(page, parked)
    assert new in listed()
    assert page.get_attribute("#backup-ages-chart", "data-backups") == str(rows.count())


def store_secret(page: Any, value: str) -> str:
    """Store a new secret through the view's form; its (random) name."""
    name = "RACE_" + secrets.token_hex(3).upper()
    page.fill("#secret-name", name)
    page.fill("#secret-value", value)
    page.click("#secret-form button[type=submit]")
    return name


def test_a_secrets_load_answered_after_a_secret_was_stored_does_not_hide_it(
    counting: Session, parked_pages: list[Parked]
) -> None:
    page = counting.page
    parked = park(parked_pages, page, VIEW_REQUEST["secrets"])
    click(page, "secrets")
    parked.wait(1)
    settle(page, parked)  # the view's first load has the list: without the secret stored next
    name = store_secret(page, "stored-while-the-list-was-out")
    parked.wait(2)  # the list read again after storing
    parked.release(1)
    row = page.locator(f'#secrets-table tr[data-secret="{name}"]')
    row.wait_for()
    parked.release(0)  # the first load answers late, with the list from before
    settle(page, parked)
    assert row.count() == 1
    page.wait_for_selector('body[data-loaded="secrets"]')


def test_a_secrets_load_answered_before_the_read_after_a_store_does_not_mark_the_view_loaded(
    counting: Session, parked_pages: list[Parked]
) -> None:
    page = counting.page
    parked = park(parked_pages, page, VIEW_REQUEST["secrets"])
    click(page, "secrets")
    parked.wait(1)  # the view's first load is out...
    name = store_secret(page, "stored-before-the-list-came")
    parked.wait(2)  # ... when a secret is stored and the list is read again
    parked.release(0)  # the first load answers: its list is no longer the one to show
    settle(page, parked)
    # Not loaded while the list to show is still out: nothing of it is on screen yet.
    assert page.get_attribute("body", "data-loaded") is None
    parked.release(1)
    page.wait_for_selector('body[data-loaded="secrets"]')
    assert page.locator(f'#secrets-table tr[data-secret="{name}"]').count() == 1
    assert_showing(page, "secrets")


@pytest.mark.parametrize(
    ("view", "entries"),
    [
        ("activity", '#events li[data-kind="db.checked"]'),
        ("database", '#db-events li[data-action="db.checked"]'),
    ],
    ids=["activity", "database"],
)
def test_an_earlier_visits_load_answering_last_does_not_put_back_what_it_read(
    counting: Session, parked_pages: list[Parked], view: str, entries: str
) -> None:
    page = counting.page
    show(page, view)
    # A refresh of the view is out: its list of events is read, one other read is held...
    parked = park(parked_pages, page, VIEW_REQUEST[view])
    parked.wait(1)
    settle(page, parked)
    # ... when something happens (a check, recorded as an event), and the reader leaves and
    # comes back: this visit's load has the new event.
    assert page.evaluate(POST_AS_PAGE, ["/v1/dashboard/checks", {"kind": "quick"}]) == 200
    show(page, "logs")
    click(page, view)
    parked.wait(2)
    parked.release(1)
    page.wait_for_selector(f'body[data-loaded="{view}"]')
    shown = page.locator(entries).count()
    assert shown >= 1
    parked.release(0)  # the earlier visit's refresh answers last, with the events from before
    settle(page, parked)
    assert page.locator(entries).count() == shown


#: A service's pid as the daemon reports it, read the way the page reads (its session).
#: (GET /v1/services/NAME: not the list the test holds.)
SERVICE_PID = """async (name) => {
  const svc = await (await fetch(`/v1/services/${name}`, { credentials: "same-origin" })).json();
  return String(svc.state).toLowerCase() === "running" && svc.pid ? String(svc.pid) : null;
}"""


def test_an_earlier_visits_services_answer_delivered_last_does_not_put_back_older_states(
    counting: Session, parked_pages: list[Parked]
) -> None:
    page = counting.page
    show(page, "activity")
    old_pid = wait_until(lambda: page.evaluate(SERVICE_PID, "echo"), timeout=60, what="echo up")
    # The services view's list is read while echo runs as old_pid; the answer is held.
    parked = park(parked_pages, page, VIEW_REQUEST["services"], answered=True)
    click(page, "services")
    parked.wait(1)
    show(page, "logs")
    # Meanwhile echo is restarted: a new process.
    assert page.evaluate(POST_AS_PAGE, ["/v1/services/echo/restart", {}]) in (200, 202)
    new_pid = wait_until(
        lambda: (pid := page.evaluate(SERVICE_PID, "echo")) != old_pid and pid,
        timeout=60,
        what="echo running again as a new process",
    )
    click(page, "services")  # back: this visit's list has the new process
    parked.wait(2)
    parked.release(1)
    pid_cell = '#services li[data-service="echo"] .pid'
    page.wait_for_function(
        "([sel, pid]) => document.querySelector(sel)?.textContent === pid", arg=[pid_cell, new_pid]
    )
    parked.release(0)  # the first visit's answer arrives last, with the process before
    settle(page, parked)
    assert page.inner_text(pid_cell) == new_pid
