"""The page when ``bastion.toml`` is edited into something the daemon's next start would
refuse, and then fixed: the daemon says each edit as an event (``config.invalid`` with the
error, ``config.changed``), and the page shows the first as a banner on every view until the
second arrives, and both in words in the events list.

The test runs its own ``bastion serve`` (it edits that daemon's home): no services, the
encrypted-file vault keyed from the environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.conftest import (
    FILE_VAULT_TOML,
    SCREENSHOTS,
    Daemon,
    file_vault_env,
    open_page,
    spawn_daemon,
    stop_daemon,
)
from tests.dashboard.test_a11y import serious_violations

pytestmark = [pytest.mark.browser, pytest.mark.posix, pytest.mark.slow]

VIEWS = ("services", "logs", "secrets", "database", "activity")
#: The value is markup: the page must show it as text (it comes from a file a user typed).
INVALID = FILE_VAULT_TOML + "[retention]\nlogs_days = '<b>seven</b>'\n"
MESSAGE = "[retention] logs_days: '<b>seven</b>' is not a whole number"


@pytest.fixture
def config_daemon(tmp_path: Path) -> Iterator[Daemon]:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "bastion.toml").write_text(FILE_VAULT_TOML)
    (home / "bastion.toml").chmod(0o600)
    running = spawn_daemon(home, file_vault_env(), tmp_path / "daemon.log")
    try:
        yield running
    finally:
        stop_daemon(running.proc)


def show(page: Any, view: str) -> None:
    page.click(f'nav a[data-view="{view}"]')
    page.wait_for_selector(f'body[data-loaded="{view}"]')


def test_a_bastion_toml_the_next_start_would_refuse_is_on_every_view_until_fixed(
    config_daemon: Daemon, chromium: Any
) -> None:
    config_file = config_daemon.home / "bastion.toml"
    with open_page(chromium, config_daemon) as session:
        page = session.page
        banner = page.locator("#config-banner")
        assert banner.is_hidden()

        config_file.write_text(INVALID)
        # Hang detector: the daemon's watch settles, the header's status reads it (10 s).
        banner.wait_for(state="visible", timeout=60_000)
        text = banner.inner_text()
        assert MESSAGE in text
        assert "keeps running on the values it started with" in text
        assert "next start would refuse the file" in text
        assert "bastion config history" in text
        assert "bastion config rollback ID" in text
        assert page.locator("#config-banner b").count() == 0  # text, never markup
        for view in VIEWS:
            show(page, view)
            assert banner.is_visible(), view
        assert serious_violations(page) == []
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for width in (1280, 400):
            page.set_viewport_size({"width": width, "height": 800})
            # The error names the file's path, one long word: it wraps, on a phone too.
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"overflows by {overflow}px at {width}"
            path = SCREENSHOTS / f"config-invalid-{width}.png"
            page.screenshot(path=str(path))
            assert path.stat().st_size > 5_000
        page.set_viewport_size({"width": 1280, "height": 800})

        # The usual fix: the text before, which is no new version (an undo, a rollback).
        config_file.write_text(FILE_VAULT_TOML)
        banner.wait_for(state="hidden", timeout=60_000)

        show(page, "activity")
        invalid = page.locator('#events li[data-kind="config.invalid"]')
        changed = page.locator('#events li[data-kind="config.changed"]')
        invalid.wait_for()
        changed.wait_for()
        assert MESSAGE in invalid.inner_text()
        assert "its next start would refuse the file" in invalid.inner_text()
        assert changed.inner_text().endswith("applies at the next start")
        assert page.locator("#events b").count() == 0
