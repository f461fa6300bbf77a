"""The Secrets view on a machine without a usable keychain (no D-Bus session bus).

The daemon is configured for the OS keychain and started without ``DBUS_SESSION_BUS_ADDRESS``,
as on a headless box or in a container. Before anyone types a value the page must say that
values cannot be stored and how to fix it, and not offer a form that can only fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.dashboard.conftest import Daemon, file_vault_env, open_page, spawn_daemon, stop_daemon
from tests.dashboard.test_a11y import serious_violations

pytestmark = [pytest.mark.browser, pytest.mark.posix, pytest.mark.slow]


@pytest.fixture(scope="module")
def keychainless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("nokeychain")
    home = root / "home"
    home.mkdir(mode=0o700)
    (home / "bastion.toml").write_text('[vault]\nbackend = "keychain"\n')
    env = file_vault_env()
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    env.pop("BASTION_VAULT_KEY", None)
    running = spawn_daemon(home, env, root / "daemon.log")
    try:
        yield running
    finally:
        stop_daemon(running.proc)


def test_secrets_view_says_the_keychain_is_unusable_before_any_value_is_typed(
    keychainless: Daemon, chromium: Any
) -> None:
    with open_page(chromium, keychainless) as session:
        page = session.page
        page.click('nav a[data-view="secrets"]')
        page.wait_for_selector('body[data-loaded="secrets"]')
        problem = page.locator("#secrets-problem")
        assert problem.is_visible()
        text = problem.inner_text()
        assert "cannot be saved" in text
        assert "no OS keychain is available" in text
        # The fix, in the user's terms: the other backend, or a Secret Service to talk to.
        assert 'vault.backend = "encrypted-file"' in text
        assert "dbus-run-session" in text
        # Nothing typed yet, and the form does not pretend it could store anything.
        assert page.input_value("#secret-value") == ""
        assert page.is_disabled("#secret-value")
        assert page.is_disabled("#secret-form button[type=submit]")
        # Reading the list still works: it comes from the index, not the keychain.
        assert "No secrets stored yet." in page.inner_text("#secrets-table")
        assert serious_violations(page) == []
