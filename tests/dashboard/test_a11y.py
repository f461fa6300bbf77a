"""axe-core over every view of the dashboard, at a desktop and a phone width.

axe-core is vendored (``vendor/axe-core/``, the unmodified ``axe.min.js`` of the npm release,
checked against the release's own SRI hash below) and injected through the DevTools protocol,
which the page's Content-Security-Policy does not govern; nothing is downloaded at test time.
A view passes with zero violations of impact ``serious`` or ``critical``.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.conftest import Daemon, Session

pytestmark = [pytest.mark.browser, pytest.mark.posix, pytest.mark.slow]

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
#: ``sri-history.json`` of axe-core 4.14.1 lists this for ``axe.min.js``.
AXE_SRI = "sha256-KTSJmUUM3yhJqOcLeRL8LahahJ2jnA0NU5T1HUqe2Vw="
VIEWS = ("services", "logs", "secrets", "database", "activity")
WIDTHS = (1280, 400)

_RUN = """async () => {
  const r = await axe.run(document, { resultTypes: ["violations"] });
  return r.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map((n) => `${n.target.join(" ")}: ${n.failureSummary}`),
  }));
}"""


def test_vendored_axe_is_the_released_file() -> None:
    digest = base64.b64encode(hashlib.sha256(AXE.read_bytes()).digest()).decode()
    assert f"sha256-{digest}" == AXE_SRI
    assert (AXE.parent / "LICENSE").read_text().startswith("Mozilla Public License")


def serious_violations(page: Any) -> list[dict[str, Any]]:
    """axe's serious and critical violations on the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    found: list[dict[str, Any]] = page.evaluate(_RUN)
    return [v for v in found if v["impact"] in {"serious", "critical"}]


def fill_logs(daemon: Daemon, n: int = 150, *, message: str = "a11y") -> None:
    """Enough old lines that the log list scrolls (axe checks scrolling regions only then)."""
    import time

    from bastion.domains.logs.repo import LogRecord, LogsRepo
    from bastion.store import Database

    start = time.time() - 7200
    db = Database.open(daemon.config.db_path, daemon.config.store, name="a11y-writer")
    try:
        LogsRepo(db).insert_batch(
            LogRecord(
                ts=start + i, level="info", source="bulk", stream="stdout", message=f"{message} {i}"
            )
            for i in range(n)
        )
    finally:
        db.close()


def show(page: Any, view: str) -> None:
    page.click(f'nav a[data-view="{view}"]')
    page.wait_for_selector(f'body[data-loaded="{view}"]')


@pytest.mark.parametrize("width", WIDTHS)
def test_every_view_has_no_serious_or_critical_violations(
    signed_in: Session, daemon: Daemon, width: int
) -> None:
    fill_logs(daemon)
    page = signed_in.page
    page.set_viewport_size({"width": width, "height": 900})
    # The board with its pictures drawn (the crasher's strip has restarts to mark).
    page.wait_for_selector('#services li[data-service="echo"] .timeline-svg[data-events]')
    # ... and the metrics over time (#22 §1): lines with a legend and a text summary.
    page.wait_for_selector('#metric-restarts path[data-series="crasher"]', state="attached")
    report = {}
    for view in VIEWS:
        show(page, view)
        if view == "logs":
            page.wait_for_function("() => document.querySelectorAll('#log-lines li').length >= 100")
            assert page.evaluate(
                "(() => { const l = document.querySelector('#log-lines');"
                " const s = l.closest('.log') || l; return s.scrollHeight > s.clientHeight; })()"
            ), "the log list does not scroll: axe would not check it"
        report[view] = serious_violations(page)
    assert report == {view: [] for view in VIEWS}, report


def test_the_confirm_dialog_has_no_serious_or_critical_violations(signed_in: Session) -> None:
    page = signed_in.page
    page.wait_for_selector('#services li[data-service="worker"][data-state="running"]')
    page.click('#services li[data-service="worker"] button[data-action="stop"]')
    page.wait_for_selector("dialog#confirm[open]")
    assert serious_violations(page) == []
    page.keyboard.press("Escape")
